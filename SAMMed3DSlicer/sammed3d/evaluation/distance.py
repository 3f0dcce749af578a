"""Exact Euclidean distance maps (with voxel spacing) via SimpleITK's Maurer transform."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk


def distance_to_mask(mask: np.ndarray, spacing_zyx: Optional[Sequence[float]] = None) -> np.ndarray:
    """For every voxel, the Euclidean distance (in spacing units) to the nearest True voxel of ``mask``.

    Voxels of ``mask`` get 0; if ``mask`` is empty every voxel gets ``inf``. ``spacing_zyx`` follows the array axes
    (numpy order); ``None`` means unit spacing. Returns float32, same shape as ``mask``.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.full(mask.shape, np.inf, dtype=np.float32)
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    if spacing_zyx is not None:
        image.SetSpacing([float(s) for s in reversed(tuple(spacing_zyx))])
    # Outside the mask, Maurer's distance to the mask's contour is the distance to the nearest mask voxel.
    signed = sitk.SignedMaurerDistanceMap(
        image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True, backgroundValue=0
    )
    return np.maximum(sitk.GetArrayFromImage(signed), 0).astype(np.float32, copy=False)


def bounding_box(mask: np.ndarray, margin: int = 0) -> Optional[tuple]:
    """Slices of the smallest box holding every True voxel, widened by ``margin`` (clipped); None if empty."""
    mask = np.asarray(mask, dtype=bool)
    slices = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        if hits.size == 0:
            return None
        slices.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(slices)
