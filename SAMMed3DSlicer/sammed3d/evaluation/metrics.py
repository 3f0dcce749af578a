"""Overlap and boundary metrics for binary 3D masks: Dice and normalised surface Dice (NSD)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .distance import bounding_box, distance_to_mask

#: Default NSD tolerance in millimetres.
DEFAULT_NSD_TOLERANCE_MM = 2.0


def _pair(gt, pred):
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if gt.shape != pred.shape:
        raise ValueError("gt and pred shapes differ: %s vs %s" % (gt.shape, pred.shape))
    return gt, pred


def dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """Dice coefficient 2|A&B| / (|A|+|B|); 1.0 when both masks are empty."""
    gt, pred = _pair(gt, pred)
    total = int(np.count_nonzero(gt)) + int(np.count_nonzero(pred))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(gt & pred)) / total


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with at least one of their 6 face neighbours outside it (the array border is outside)."""
    mask = np.asarray(mask, dtype=bool)
    padded = np.pad(mask, 1)
    interior = mask.copy()
    core = tuple(slice(1, -1) for _ in range(mask.ndim))
    for axis in range(mask.ndim):
        for step in (-1, 1):
            shifted = list(core)
            shifted[axis] = slice(1 + step, padded.shape[axis] - 1 + step)
            interior &= padded[tuple(shifted)]
    return mask & ~interior


def nsd(
    gt: np.ndarray,
    pred: np.ndarray,
    spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0),
    tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
) -> float:
    """Normalised surface Dice at ``tolerance_mm``: the fraction of both masks' surface voxels lying within the
    tolerance of the other mask's surface (distances between voxel centres, using ``spacing_zyx`` in array order).

    1.0 when both masks are empty, 0.0 when exactly one is.
    """
    gt, pred = _pair(gt, pred)
    if len(tuple(spacing_zyx)) != gt.ndim:
        raise ValueError("spacing_zyx needs %d values, got %r" % (gt.ndim, spacing_zyx))
    gt_any, pred_any = bool(gt.any()), bool(pred.any())
    if not gt_any and not pred_any:
        return 1.0
    if not gt_any or not pred_any:
        return 0.0
    # Both surfaces lie in the union's bounding box, so distances computed on that crop are exact.
    box = bounding_box(gt | pred)
    gt_surface = surface_voxels(gt[box])
    pred_surface = surface_voxels(pred[box])
    to_gt = distance_to_mask(gt_surface, spacing_zyx)
    to_pred = distance_to_mask(pred_surface, spacing_zyx)
    close = int(np.count_nonzero(to_pred[gt_surface] <= tolerance_mm))
    close += int(np.count_nonzero(to_gt[pred_surface] <= tolerance_mm))
    return close / float(np.count_nonzero(gt_surface) + np.count_nonzero(pred_surface))
