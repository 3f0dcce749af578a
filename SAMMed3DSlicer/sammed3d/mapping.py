"""Map the model's low-resolution logits back onto the original image grid, touching only the ROI's region.

Three methods, each returning a :class:`RegionMask` (the region of the original grid under the ROI plus a uint8
sub-array); nothing outside that region is computed or changed:

* ``"linear"`` (default): logits 1x1x32^3 -> trilinear (align_corners=False, as the official code) to 128^3 ->
  linear resampling onto the original voxels -> threshold at 0 (sigmoid 0.5). Masks on fine grids are smooth.
* ``"official"``: the post-processing of the current official release (SAM-Med3D main branch,
  ``utils/infer_utils.py`` ``data_postprocess``): the binary 128^3 ROI mask (upsampled logit > 0) resampled onto the
  original grid by nearest neighbour in *physical* space (torchio ``Resample(target=image,
  image_interpolation="nearest")``, i.e. ITK's nearest-neighbour interpolator, which rounds ties up).
* ``"cvpr25"``: the older CVPR25_3DFM branch (``medim_infer.py``): the binary mask pasted into the whole-image
  1.5 mm grid, then ``torch.nn.functional.interpolate(mode="nearest")`` to the original size, which works on array
  indices in the image's own axis order (voxel o takes resampled voxel floor(o * n_resampled / n_original)).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Tuple

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from . import geometry
from .roi import Roi, SourceGeometry

METHODS = ("linear", "official", "cvpr25")


class Region(NamedTuple):
    """A box of the original image: start ``index`` and ``size``, both in SimpleITK (i, j, k) order."""

    index: Tuple[int, int, int]
    size: Tuple[int, int, int]

    @property
    def slices(self) -> Tuple[slice, slice, slice]:
        """Slices into a GetArrayFromImage-style array ([k, j, i])."""
        return tuple(slice(start, start + n) for start, n in zip(self.index[::-1], self.size[::-1]))

    @property
    def empty(self) -> bool:
        return min(self.size) <= 0


@dataclass
class RegionMask:
    """A binary mask on ``region`` of the original grid: ``array`` is uint8 with shape ``region.size[::-1]``."""

    region: Region
    array: np.ndarray
    source: SourceGeometry

    def paste_into(self, full_array: np.ndarray) -> np.ndarray:
        """Write the mask into a full [k, j, i] array of the original grid (in place; returns it)."""
        return paste_region(full_array, self.region, self.array)

    def to_image(self) -> sitk.Image:
        """The mask as a uint8 SimpleITK image on the full original grid (zeros outside the region)."""
        full = np.zeros(self.source.size[::-1], dtype=np.uint8)
        image = sitk.GetImageFromArray(self.paste_into(full))
        image.CopyInformation(self.source.reference_image())
        return image

    def region_image(self) -> sitk.Image:
        """The mask's region alone as a SimpleITK image (origin at the region start), e.g. for sitk.Paste."""
        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        image.CopyInformation(self.source.reference_image(self.region.index, self.region.size))
        return image


def paste_region(full_array: np.ndarray, region: Region, sub: np.ndarray) -> np.ndarray:
    """``full_array[region] = sub`` for a [k, j, i] array of the original grid; returns ``full_array``."""
    if not region.empty:
        full_array[region.slices] = sub
    return full_array


def upsample_logits(low_res_logits, size: int) -> np.ndarray:
    """1x1xNxNxN (or NxNxN) logits -> (size, size, size) float32 numpy, trilinear, align_corners=False."""
    logits = torch.as_tensor(low_res_logits).detach().float().cpu()
    while logits.dim() < 5:
        logits = logits[None]
    if tuple(logits.shape[:2]) != (1, 1):
        raise ValueError("expected low-resolution logits of shape 1x1xNxNxN, got %s" % (tuple(logits.shape),))
    upsampled = F.interpolate(logits, size=(size, size, size), mode="trilinear", align_corners=False)
    return upsampled[0, 0].numpy()


def roi_region(roi: Roi) -> Region:
    """Box of original voxels whose centres lie inside the ROI cube (within half an ROI voxel of its centres)."""
    size = roi.size
    corners = np.array([[a, b, c] for a in (-0.5, size - 0.5) for b in (-0.5, size - 0.5)
                        for c in (-0.5, size - 0.5)])
    indices = geometry.apply_affine(np.linalg.inv(roi.source.affine) @ roi.affine, corners)
    eps = 1e-6
    lo = np.clip(np.ceil(indices.min(axis=0) - eps), 0, roi.source.size).astype(int)
    hi = np.clip(np.floor(indices.max(axis=0) + eps) + 1, lo, roi.source.size).astype(int)
    return Region(tuple(int(n) for n in lo), tuple(int(n) for n in hi - lo))


def map_logits_linear(roi: Roi, low_res_logits) -> RegionMask:
    """Default mapping: upsample, resample the logits linearly onto the original voxels, threshold at 0."""
    region = roi_region(roi)
    if region.empty:
        return RegionMask(region, np.zeros(region.size[::-1], dtype=np.uint8), roi.source)
    logits = roi.to_sitk(upsample_logits(low_res_logits, roi.size))
    reference = roi.source.reference_image(region.index, region.size)
    resampled = sitk.Resample(logits, reference, sitk.Transform(), sitk.sitkLinear, -1.0e4, sitk.sitkFloat32)
    return RegionMask(region, (sitk.GetArrayViewFromImage(resampled) > 0).astype(np.uint8), roi.source)


def _nearest_source_indices(n_in: int, n_out: int) -> np.ndarray:
    """For each of n_out voxels, the index torch 'nearest' interpolation reads from an axis of n_in voxels."""
    ramp = torch.arange(n_in, dtype=torch.float64)[None, None]
    return F.interpolate(ramp, size=n_out, mode="nearest")[0, 0].numpy().astype(int)


def map_logits_official(roi: Roi, low_res_logits) -> RegionMask:
    """Official (main branch) mapping: the binary 128^3 ROI mask, ITK nearest neighbour onto the original voxels.

    As torchio ``Resample(target=image, image_interpolation="nearest")`` of the ROI label map: the whole ROI,
    padding included, is the source; original voxels whose centres fall outside the ROI get 0.
    """
    region = roi_region(roi)
    if region.empty:
        return RegionMask(region, np.zeros(region.size[::-1], dtype=np.uint8), roi.source)
    mask = roi.to_sitk((upsample_logits(low_res_logits, roi.size) > 0).astype(np.uint8))
    reference = roi.source.reference_image(region.index, region.size)
    resampled = sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return RegionMask(region, sitk.GetArrayFromImage(resampled), roi.source)


def map_logits_cvpr25(roi: Roi, low_res_logits) -> RegionMask:
    """CVPR25-branch mapping: binary 1.5 mm mask, nearest neighbour (torch index-space 'nearest') to the original grid."""
    mask = upsample_logits(low_res_logits, roi.size) > 0
    grid = roi.grid
    # Reorder the ROI mask to source axis order (i, j, k), undoing the canonical flips.
    roi_indices = []
    for axis in range(3):
        canonical = grid.ras_axis[axis]
        resampled = _nearest_source_indices(grid.source_size[axis], roi.source.size[axis])
        if grid.sign[axis] < 0:
            resampled = grid.source_size[axis] - 1 - resampled
        roi_indices.append(resampled - roi.start[canonical])
    inside = [(idx >= 0) & (idx < roi.size) for idx in roi_indices]
    index, size, picks = [], [], []
    for axis in range(3):
        where = np.flatnonzero(inside[axis])  # contiguous: the nearest indices are monotonic
        start = int(where[0]) if where.size else 0
        index.append(start)
        size.append(int(where.size))
        picks.append(roi_indices[axis][start:start + where.size])
    region = Region(tuple(index), tuple(size))
    if region.empty:
        return RegionMask(region, np.zeros(region.size[::-1], dtype=np.uint8), roi.source)
    by_source_axis = np.transpose(mask, grid.ras_axis)  # axis a of this view is canonical axis ras_axis[a]
    sub = by_source_axis[np.ix_(picks[0], picks[1], picks[2])]
    return RegionMask(region, np.ascontiguousarray(sub.transpose(2, 1, 0)).astype(np.uint8), roi.source)


def map_logits(roi: Roi, low_res_logits, method: str = "linear") -> RegionMask:
    """Map 1x1x32^3 low-resolution logits of ``roi`` to a mask on the original grid (see module docstring)."""
    if method == "linear":
        return map_logits_linear(roi, low_res_logits)
    if method == "official":
        return map_logits_official(roi, low_res_logits)
    if method == "cvpr25":
        return map_logits_cvpr25(roi, low_res_logits)
    raise ValueError("unknown mapping method %r; use one of %s" % (method, ", ".join(METHODS)))
