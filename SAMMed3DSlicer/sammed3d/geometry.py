"""Coordinate conventions, stated once, and the small vectorised helpers that follow from them.

Conventions used everywhere in ``sammed3d``:

* **Physical space of a SimpleITK image is LPS, in mm** (x toward patient Left, y toward Posterior, z toward
  Superior). ``image.GetOrigin()``, ``TransformIndexToPhysicalPoint`` and ``GetDirection()`` are all LPS.
* **Slicer world coordinates and every user-facing point (clicks, markups, CLI ``--point``) are RAS, in mm.**
  RAS = LPS with x and y negated: ``ras = LPS_TO_RAS @ lps`` with ``LPS_TO_RAS = diag(-1, -1, 1)`` (its own inverse).
* **SimpleITK index (i, j, k)** addresses a voxel as ``image[i, j, k]``; physical point =
  ``origin + D @ (spacing * (i, j, k))`` where ``D`` is the 3x3 direction matrix (columns = LPS unit vectors of the
  index axes). Continuous (float) indices use the same formula; voxel (i, j, k) covers [i - 0.5, i + 0.5] etc.
* **NumPy arrays from ``SimpleITK.GetArrayFromImage`` are indexed [k, j, i]** (reversed). :class:`Region` and the
  mapping code follow this: region index/size are in (i, j, k) order, sub-arrays in [k, j, i] order.
* **ROI arrays (model input) are indexed [a0, a1, a2] with axes running toward R, A, S** (RAS canonical, exactly
  as torchio ``ToCanonical`` / nibabel ``as_closest_canonical``: each image axis is assigned, in order, to the RAS
  axis it is most parallel to, flipped if it points the other way; an oblique image keeps its obliquity).
  ``Roi.image[0, 0, a0, a1, a2]``.
* **Model point coordinates are float voxel indices (a0, a1, a2) along the ROI axes 0, 1, 2.**
* **Affines are 4x4 matrices mapping an index (homogeneous column vector) to RAS mm** (nibabel/torchio convention).
  ``Roi.affine`` maps ROI index (a0, a1, a2) to RAS; :func:`image_affine_ras` does the same for an image's (i, j, k).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

#: Multiply an LPS point by this (3x3) to get RAS, and vice versa.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def _points(points) -> np.ndarray:
    """(N, 3) or (3,) float64 array; raises ValueError for anything else."""
    array = np.asarray(points, dtype=np.float64)
    if array.shape[-1:] != (3,) or array.ndim > 2:
        raise ValueError("points must have shape (3,) or (N, 3), got %s" % (array.shape,))
    return array


def ras_to_lps(points) -> np.ndarray:
    """Convert (N, 3) or (3,) RAS points to LPS (negate x and y)."""
    return _points(points) * np.array([-1.0, -1.0, 1.0])


def lps_to_ras(points) -> np.ndarray:
    """Convert (N, 3) or (3,) LPS points to RAS (negate x and y)."""
    return _points(points) * np.array([-1.0, -1.0, 1.0])


def apply_affine(affine: np.ndarray, points) -> np.ndarray:
    """Apply a 4x4 affine to (N, 3) or (3,) points."""
    points = _points(points)
    affine = np.asarray(affine, dtype=np.float64)
    return points @ affine[:3, :3].T + affine[:3, 3]


def make_affine(origin, spacing, direction) -> np.ndarray:
    """4x4 index -> physical affine from origin (3,), spacing (3,) and a 3x3 direction (columns = axes)."""
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(direction, dtype=np.float64).reshape(3, 3) * np.asarray(spacing, dtype=np.float64)
    affine[:3, 3] = np.asarray(origin, dtype=np.float64)
    return affine


def lps_affine_to_ras(affine_lps: np.ndarray) -> np.ndarray:
    """Convert an index -> LPS affine to an index -> RAS affine (and back: the operation is its own inverse)."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ np.asarray(affine_lps, dtype=np.float64)


ras_affine_to_lps = lps_affine_to_ras


def image_affine_lps(image) -> np.ndarray:
    """4x4 affine mapping a SimpleITK image's index (i, j, k) to LPS mm."""
    return make_affine(image.GetOrigin(), image.GetSpacing(), image.GetDirection())


def image_affine_ras(image) -> np.ndarray:
    """4x4 affine mapping a SimpleITK image's index (i, j, k) to RAS mm (the nibabel/torchio affine)."""
    return lps_affine_to_ras(image_affine_lps(image))


def index_to_lps(image, indices) -> np.ndarray:
    """Continuous (i, j, k) indices, (N, 3) or (3,), of a SimpleITK image -> LPS mm."""
    return apply_affine(image_affine_lps(image), indices)


def lps_to_index(image, points_lps) -> np.ndarray:
    """LPS mm points, (N, 3) or (3,) -> continuous (i, j, k) indices of a SimpleITK image."""
    return apply_affine(np.linalg.inv(image_affine_lps(image)), points_lps)


def index_to_ras(image, indices) -> np.ndarray:
    """Continuous (i, j, k) indices of a SimpleITK image -> RAS mm."""
    return apply_affine(image_affine_ras(image), indices)


def ras_to_index(image, points_ras) -> np.ndarray:
    """RAS mm points -> continuous (i, j, k) indices of a SimpleITK image."""
    return apply_affine(np.linalg.inv(image_affine_ras(image)), points_ras)


def inside_index_bounds(indices, size: Sequence[int], margin: float = 0.5) -> np.ndarray:
    """True where continuous indices lie within the image: -margin <= index <= size - 1 + margin on every axis.

    The default margin 0.5 means "inside a voxel of the image" (voxel n covers [n - 0.5, n + 0.5]).
    """
    indices = _points(indices)
    size = np.asarray(size, dtype=np.float64)
    return np.all((indices >= -margin) & (indices <= size - 1 + margin), axis=-1)


def closest_canonical_axes(direction_ras) -> Tuple[np.ndarray, np.ndarray]:
    """Assign each image axis to the RAS axis it is most parallel to, as nibabel's ``io_orientation``.

    ``direction_ras`` is a 3x3 matrix whose columns are the RAS unit vectors of the image axes. Axes are taken in
    order 0, 1, 2; each picks the largest-magnitude remaining RAS component (ties go to the lower RAS axis).
    Returns ``(ras_axis, sign)``: image axis ``n`` runs along RAS axis ``ras_axis[n]``, in direction ``sign[n]``.
    """
    remaining = np.array(direction_ras, dtype=np.float64).reshape(3, 3).copy()
    ras_axis = np.zeros(3, dtype=int)
    sign = np.ones(3, dtype=int)
    for axis in range(3):
        column = remaining[:, axis]
        target = int(np.argmax(np.abs(column)))
        if column[target] == 0:
            raise ValueError("degenerate direction matrix")
        ras_axis[axis] = target
        sign[axis] = 1 if column[target] > 0 else -1
        remaining[target, :] = 0.0
    return ras_axis, sign


def canonical_direction_ras(direction_ras) -> np.ndarray:
    """Direction (RAS, columns = axes) of the closest-canonical reorientation of an image: axes toward ~R, ~A, ~S.

    Column ``ras_axis[n]`` of the result is ``sign[n]`` times column ``n`` of the input (see
    :func:`closest_canonical_axes`); an oblique direction stays oblique.
    """
    direction_ras = np.asarray(direction_ras, dtype=np.float64).reshape(3, 3)
    ras_axis, sign = closest_canonical_axes(direction_ras)
    result = np.zeros((3, 3))
    result[:, ras_axis] = direction_ras * sign
    return result


def direction_ras(image) -> np.ndarray:
    """3x3 RAS direction matrix (columns = RAS unit vectors of index axes i, j, k) of a SimpleITK image."""
    return LPS_TO_RAS @ np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
