"""The prompt vocabulary every session speaks: points and boxes in RAS millimetres (Slicer's world coordinates).

A :class:`Point` is a click (positive = foreground). A :class:`Box` is an axis-aligned box in RAS given by two
opposite corners; in an image it covers the continuous index ranges of its corners' bounding box. MedSAM takes a box
(its slices are the box's k range); SAM-Med3D takes points, and a box given to it becomes its centre click (as the
official CVPR25 baseline does).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from .errors import PromptError
from .geometry import inside_index_bounds, ras_to_index

Vector = Tuple[float, float, float]


def _vector(values, what: str) -> Vector:
    array = np.asarray(values, dtype=float).reshape(-1)
    if array.shape != (3,):
        raise PromptError("%s needs 3 coordinates (R A S), got %d" % (what, array.size))
    if not np.all(np.isfinite(array)):
        raise PromptError("%s has a non-finite coordinate: %s" % (what, tuple(array)))
    return tuple(float(v) for v in array)


@dataclass(frozen=True)
class Point:
    """A click at `ras` (mm); `positive` False marks background."""

    ras: Vector
    positive: bool = True

    def __post_init__(self):
        object.__setattr__(self, "ras", _vector(self.ras, "a point"))


@dataclass(frozen=True)
class Box:
    """An axis-aligned RAS box from two opposite corners (mm), in any order."""

    corner1: Vector
    corner2: Vector

    def __post_init__(self):
        object.__setattr__(self, "corner1", _vector(self.corner1, "a box corner"))
        object.__setattr__(self, "corner2", _vector(self.corner2, "a box corner"))

    @property
    def centre(self) -> Vector:
        return tuple((a + b) / 2 for a, b in zip(self.corner1, self.corner2))

    def corners(self) -> np.ndarray:
        """The 8 corners (8 x 3, RAS mm)."""
        low, high = np.minimum(self.corner1, self.corner2), np.maximum(self.corner1, self.corner2)
        return np.array([[(low, high)[a][0], (low, high)[b][1], (low, high)[c][2]]
                         for a in (0, 1) for b in (0, 1) for c in (0, 1)])

    def index_bounds(self, image) -> Tuple[np.ndarray, np.ndarray]:
        """(low, high) continuous (i, j, k) index bounds of the box in `image`, clipped to the image's voxels.

        PromptError when the box misses the image entirely.
        """
        indices = np.round(ras_to_index(image, self.corners()), 6)  # no 6.9999999 from the RAS round trip
        low, high = indices.min(axis=0), indices.max(axis=0)
        size = np.asarray(image.GetSize(), dtype=float)
        if np.any(high < -0.5) or np.any(low > size - 0.5):
            raise PromptError("the box R %.1f..%.1f A %.1f..%.1f S %.1f..%.1f mm is outside the image"
                              % tuple(v for pair in zip(self.corner1, self.corner2) for v in sorted(pair)))
        return np.clip(low, 0, size - 1), np.clip(high, 0, size - 1)

    def centre_point(self, image=None) -> Point:
        """The box's centre as a positive click (SAM-Med3D's box prompt); checked to lie inside `image` if given."""
        point = Point(self.centre, True)
        if image is not None and not inside_index_bounds(ras_to_index(image, np.asarray(point.ras)),
                                                         image.GetSize()):
            raise PromptError("the box centre R=%.1f A=%.1f S=%.1f mm is outside the image" % point.ras)
        return point
