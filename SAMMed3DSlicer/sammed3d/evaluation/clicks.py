"""Seeded click simulators for interactive-segmentation evaluation (SAM-Med3D protocol).

A clicker looks at the ground truth and the current prediction and places the next click:

- ``random`` (the official protocol): uniformly among the error voxels (false negatives and false positives);
  positive if the voxel is a false negative.
- ``ritm``: Euclidean distance transform of the false-negative and the false-positive regions (image border counts
  as outside); the region with the larger maximum distance gets the click (positive for false negatives, ties go to
  the false positives as in the official code), drawn uniformly among its voxels farther than half that maximum.

With an empty prediction the error region is the object itself, so the first click always lands inside it.
Clicks are ``Click(index, positive)`` with ``index`` in numpy array order ``(k, j, i)``.
"""
from __future__ import annotations

import hashlib
from collections import namedtuple
from typing import Optional, Sequence

import numpy as np

from ..errors import SamMed3DError
from .distance import bounding_box, distance_to_mask

Click = namedtuple("Click", ["index", "positive"])
Click.__doc__ = "A simulated click: ``index`` = (k, j, i) numpy array index (ints), ``positive`` = bool."


def _error_regions(gt: np.ndarray, pred: np.ndarray):
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if gt.shape != pred.shape or gt.ndim != 3:
        raise ValueError("gt and pred must be 3D arrays of the same shape, got %s and %s" % (gt.shape, pred.shape))
    if not gt.any():
        raise ValueError("the ground-truth mask is empty: there is no object to click on")
    return gt & ~pred, pred & ~gt


class _Clicker(object):
    name = ""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def _pick(self, candidates: np.ndarray, offset: Sequence[int]):
        flat = np.flatnonzero(candidates)
        chosen = flat[int(self._rng.integers(flat.size))]
        local = np.unravel_index(chosen, candidates.shape)
        return tuple(int(c) + int(o) for c, o in zip(local, offset))

    def next_click(self, gt: np.ndarray, pred: np.ndarray, spacing_zyx: Optional[Sequence[float]] = None):
        """The next click for prediction ``pred`` of object ``gt`` (3D bool arrays), or None when pred == gt."""
        raise NotImplementedError

    def __repr__(self):
        return "%s(seed=%r)" % (type(self).__name__, self.seed)


class RandomClicker(_Clicker):
    """Official 'random' protocol: uniform over false negatives and false positives."""

    name = "random"

    def next_click(self, gt, pred, spacing_zyx=None):
        false_neg, false_pos = _error_regions(gt, pred)
        error = false_neg | false_pos
        box = bounding_box(error)
        if box is None:
            return None
        index = self._pick(error[box], [s.start for s in box])
        return Click(index, bool(false_neg[index]))


class RitmClicker(_Clicker):
    """'ritm' protocol: deep inside the larger error region (distance transform, optional voxel spacing)."""

    name = "ritm"

    def next_click(self, gt, pred, spacing_zyx=None):
        false_neg, false_pos = _error_regions(gt, pred)
        box = bounding_box(false_neg | false_pos)
        if box is None:
            return None
        # One voxel of background around the box: distances inside it are exact, and the image border is outside.
        fn = np.pad(false_neg[box], 1)
        fp = np.pad(false_pos[box], 1)
        fn_depth = distance_to_mask(~fn, spacing_zyx) if fn.any() else np.zeros(fn.shape, np.float32)
        fp_depth = distance_to_mask(~fp, spacing_zyx) if fp.any() else np.zeros(fp.shape, np.float32)
        fn_max = float(fn_depth.max())
        fp_max = float(fp_depth.max())
        positive = fn_max > fp_max
        depth, max_depth = (fn_depth, fn_max) if positive else (fp_depth, fp_max)
        offset = [s.start - 1 for s in box]
        return Click(self._pick(depth > max_depth / 2.0, offset), positive)


CLICKERS = {"random": RandomClicker, "ritm": RitmClicker}


def derive_seed(seed: int, *context) -> int:
    """A stable 63-bit seed from ``seed`` and context (e.g. case id, label), independent of run order."""
    text = "\x1f".join([str(int(seed))] + [str(c) for c in context])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> 1


def make_clicker(name: str, seed: int = 0, *context):
    """A ``random`` or ``ritm`` clicker seeded from ``seed`` and optional context (so resumed runs repeat)."""
    try:
        cls = CLICKERS[name]
    except KeyError:
        raise SamMed3DError("unknown clicker %r (choose from: %s)" % (name, ", ".join(sorted(CLICKERS))))
    return cls(derive_seed(seed, *context) if context else seed)
