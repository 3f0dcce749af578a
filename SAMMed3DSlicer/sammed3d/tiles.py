"""ROI tiles of an interactive session: one 128^3 ROI each, its cached embedding, its prompts and its logits.

Objects larger than one ROI (192 mm at 1.5 mm; a liver often is) are covered by several tiles on the same official
1.5 mm grid. After a tile is decoded, every face of its ROI that the predicted mask touches while the image goes on
beyond it proposes a neighbour tile shifted by half an ROI (64 voxels) across that face. The neighbour is prompted
with one positive point at the deepest mask voxel of the overlap (the far half of the old tile), every user click
inside it, and the mask found so far as its mask prompt; its own result may propose further tiles, up to the
session's `max_rois`. Results are painted onto the original grid tile by tile, the most recently updated last.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from . import geometry
from .mapping import RegionMask, map_logits, upsample_logits
from .roi import Roi

#: Magnitude of the logits that stand for a known inside / outside voxel in a mask prompt made from a binary mask.
MASK_PROMPT_LOGIT = 4.0
#: A face "touched" by the mask: mask voxels within this many ROI voxels of it.
FACE_MARGIN = 2


@dataclass
class Tile:
    """One ROI with its embedding, its prompts (ROI voxel coordinates, labels 1/0) and its latest logits."""

    roi: Roi
    embedding: torch.Tensor
    anchor: Optional[Tuple[np.ndarray, int]] = None  # synthetic positive point of an expansion tile
    points: List[Tuple[np.ndarray, int]] = field(default_factory=list)
    logits: Optional[torch.Tensor] = None  # 1 x 1 x 32^3, the previous low-res logits (mask prompt)
    result: Optional[RegionMask] = None
    footprint: Optional[np.ndarray] = None  # bool over result.region for oblique images; None: the whole region
    updated: int = 0

    @property
    def start(self) -> Tuple[int, int, int]:
        return tuple(int(s) for s in self.roi.start)

    def prompts(self) -> Tuple[np.ndarray, np.ndarray]:
        items = ([self.anchor] if self.anchor is not None else []) + self.points
        coords = np.array([p for p, _ in items], dtype=np.float32).reshape(-1, 3)
        labels = np.array([label for _, label in items], dtype=np.int64)
        return coords, labels

    def centrality(self, point_ras) -> float:
        """How deep inside the ROI a point lies (distance in voxels to the nearest face; negative outside)."""
        index = self.roi.ras_to_index(point_ras)
        size = self.roi.size
        return float(np.min(np.minimum(index + 0.5, size - 0.5 - index)))


def is_axis_aligned(image_direction) -> bool:
    direction = np.abs(np.asarray(image_direction, dtype=float).reshape(3, 3))
    return bool(np.allclose(np.sort(direction, axis=0)[-1], 1.0, atol=1e-6))


def footprint(roi: Roi, result: RegionMask) -> Optional[np.ndarray]:
    """Voxels of the result's region whose centres lie inside the ROI cube (None when that is all of them)."""
    if result.region.empty or is_axis_aligned(roi.source.direction):
        return None
    k, j, i = np.meshgrid(*[np.arange(s, s + n) for s, n in zip(result.region.index[::-1], result.region.size[::-1])],
                          indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(float)
    to_roi = np.linalg.inv(roi.affine) @ roi.source.affine
    index = geometry.apply_affine(to_roi, ijk)
    inside = geometry.inside_index_bounds(index, [roi.size] * 3)
    return inside.reshape(result.array.shape)


def paint(full: np.ndarray, tile: Tile) -> None:
    """Write a tile's result into a full [k, j, i] mask of the original grid."""
    result = tile.result
    if result is None or result.region.empty:
        return
    if tile.footprint is None:
        result.paste_into(full)
    else:
        view = full[result.region.slices]
        view[tile.footprint] = result.array[tile.footprint]


def covered_by(roi: Roi, tiles: List[Tile]) -> np.ndarray:
    """Bool 128^3 over `roi`: voxels that lie inside any of `tiles` (all tiles share the official grid)."""
    covered = np.zeros((roi.size,) * 3, dtype=bool)
    for tile in tiles:
        lo = np.clip(np.asarray(tile.start) - roi.start, 0, roi.size)
        hi = np.clip(np.asarray(tile.start) + tile.roi.size - roi.start, 0, roi.size)
        if np.all(hi > lo):
            covered[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return covered


def mask_prompt(roi: Roi, full_mask: sitk.Image, known: np.ndarray, device) -> Optional[torch.Tensor]:
    """Low-res logits (1 x 1 x 32^3) saying what is already known about the ROI: +L inside the current mask, -L
    outside it where it is known, 0 (no information, like the official first pass) elsewhere. None if nothing known."""
    if not known.any():
        return None
    reference = roi.to_sitk(np.zeros((roi.size,) * 3, dtype=np.uint8))
    inside = sitk.GetArrayFromImage(sitk.Resample(full_mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor,
                                                      0, sitk.sitkFloat32))
    # roi.to_sitk arrays are indexed like the ROI ([a0, a1, a2]); GetArrayView returns that same layout.
    pooled = F.avg_pool3d(torch.from_numpy(np.stack([inside, known.astype(np.float32)]))[None], 4)[0]
    logits = torch.where(pooled[1] > 0.5, MASK_PROMPT_LOGIT * (2 * pooled[0] - 1), torch.zeros(()))
    return logits[None, None].to(device)


def binary_roi_mask(tile: Tile) -> np.ndarray:
    """The tile's 128^3 mask (upsampled logits > 0) in ROI index order."""
    return upsample_logits(tile.logits, tile.roi.size) > 0


def object_mask(tile: Tile) -> np.ndarray:
    """The parts of the tile's mask connected to one of its positive prompts (fragments elsewhere are not the
    object the user clicked)."""
    mask = binary_roi_mask(tile)
    coords, labels = tile.prompts()
    seeds = np.round(coords[labels == 1]).astype(int)
    seeds = seeds[np.all((seeds >= 0) & (seeds < tile.roi.size), axis=1)]
    seeds = [tuple(p) for p in seeds if mask[tuple(p)]]
    if not seeds:
        return np.zeros_like(mask)
    components = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8))))
    return np.isin(components, [components[p] for p in seeds])


def expansion_proposals(tile: Tile) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(direction (3,), start of the neighbour ROI (3,)) for each face the object touches where the image goes on."""
    mask = object_mask(tile)
    if not mask.any():
        return []
    size, half = tile.roi.size, tile.roi.size // 2
    lo, hi = tile.roi.valid_box
    grid_size = np.asarray(tile.roi.grid.size)
    proposals = []
    for axis in range(3):
        for sign in (-1, 1):
            face = [slice(None)] * 3
            face[axis] = slice(0, FACE_MARGIN) if sign < 0 else slice(size - FACE_MARGIN, size)
            if sign < 0:
                image_goes_on = lo[axis] == 0 and tile.start[axis] > 0
            else:
                image_goes_on = hi[axis] == size and tile.start[axis] + size < grid_size[axis]
            if image_goes_on and mask[tuple(face)].any():
                direction = np.zeros(3, dtype=int)
                direction[axis] = sign
                proposals.append((direction, np.asarray(tile.start) + direction * half))
    return proposals


def anchor_point(tile: Tile, direction: np.ndarray, new_start: np.ndarray) -> Optional[np.ndarray]:
    """Deepest mask voxel of `tile` inside the overlap with the neighbour at `new_start`, in the neighbour's ROI
    voxel coordinates (None if the overlap holds no mask)."""
    mask = object_mask(tile)
    size = tile.roi.size
    overlap = np.zeros_like(mask)
    lo = np.clip(new_start - np.asarray(tile.start), 0, size)
    hi = np.clip(new_start + size - np.asarray(tile.start), 0, size)
    overlap[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    candidates = mask & overlap
    if not candidates.any():
        return None
    distance = sitk.GetArrayFromImage(
        sitk.SignedMaurerDistanceMap(sitk.GetImageFromArray(candidates.astype(np.uint8)), insideIsPositive=True,
                                     squaredDistance=False, useImageSpacing=False))
    best = np.unravel_index(int(np.argmax(np.where(candidates, distance, -np.inf))), mask.shape)
    return np.asarray(best, dtype=np.float64) + np.asarray(tile.start) - new_start


def decode(model, tile: Tile, mask_prompt_logits: Optional[torch.Tensor], autocast_context) -> None:
    """Run prompt encoder + decoder with all of the tile's prompts and its previous logits (or `mask_prompt`)."""
    coords, labels = tile.prompts()
    device = tile.embedding.device
    previous = tile.logits if tile.logits is not None else mask_prompt_logits
    if previous is None:  # the official first pass: an all-zero mask prompt (not "no mask")
        previous = torch.zeros((1, 1) + (tile.roi.size // 4,) * 3, device=device)
    with torch.inference_mode(), autocast_context:
        logits = model.decode(
            tile.embedding,
            torch.from_numpy(coords)[None].to(device),
            torch.from_numpy(labels)[None].to(device),
            previous,
        )
    tile.logits = logits.float()


def map_result(tile: Tile, method: str) -> None:
    tile.result = map_logits(tile.roi, tile.logits.cpu(), method)
    tile.footprint = footprint(tile.roi, tile.result)
