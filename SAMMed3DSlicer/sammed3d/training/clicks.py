"""Click simulation on training crops (torch, batched): first click in the object, then in the error region."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F


def _random_voxel(region: torch.Tensor, generator: torch.Generator) -> Optional[torch.Tensor]:
    """Index (3,) of a voxel drawn uniformly from a boolean S^3 region, or None when it is empty."""
    candidates = torch.nonzero(region)
    if candidates.shape[0] == 0:
        return None
    pick = int(torch.randint(candidates.shape[0], (1,), generator=generator))
    return candidates[pick]


def _interior(region: torch.Tensor, radius: int) -> torch.Tensor:
    """The voxels of a boolean S^3 region at least ``radius`` voxels (chessboard) inside it."""
    inverted = (~region).float()[None, None]
    return F.max_pool3d(inverted, 2 * radius + 1, stride=1, padding=radius)[0, 0] < 0.5


def next_clicks(
    gt: torch.Tensor, pred: Optional[torch.Tensor], generator: torch.Generator, deep: float = 0.0
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One new click per sample: B x 1 x 3 float coordinates (ROI voxel indices) and B x 1 long labels (1 / 0).

    ``gt`` and ``pred``: B x 1 x S^3 binary (``pred`` None before the first prediction). The click is drawn
    uniformly from the object (first click) or from the error region (false negatives and false positives);
    it is positive iff it lies in the false negatives. A perfect prediction gets a positive click in the object.
    An empty object gets a negative click anywhere (the model learns to return nothing).
    ``deep``: probability of drawing instead from the error region's interior (>= 2 voxels from its edge, when it
    has one), as a person (or the 'ritm' simulator) tends to click; 0 = the official uniform protocol.
    """
    gt = gt.bool()
    batch = gt.shape[0]
    coords = torch.zeros((batch, 1, 3), dtype=torch.float32, device=gt.device)
    labels = torch.zeros((batch, 1), dtype=torch.long, device=gt.device)
    for b in range(batch):
        obj = gt[b, 0]
        if pred is None:
            fn, error = obj, obj
        else:
            p = pred[b, 0].bool()
            fn = obj & ~p
            error = fn | (p & ~obj)
        voxel = None
        if deep > 0 and float(torch.rand((), generator=generator)) < deep:
            voxel = _random_voxel(_interior(error, 2), generator)
        if voxel is None:
            voxel = _random_voxel(error, generator)
        if voxel is None:
            voxel = _random_voxel(obj, generator)
        if voxel is None:  # empty object: a negative click anywhere
            voxel = torch.stack([torch.randint(n, (1,), generator=generator)[0] for n in obj.shape]).to(gt.device)
            positive = False
        else:
            positive = bool(obj[tuple(voxel)])
        coords[b, 0] = voxel.float()
        labels[b, 0] = int(positive)
    return coords, labels
