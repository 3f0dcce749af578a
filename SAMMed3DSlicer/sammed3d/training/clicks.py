"""Click simulation on training crops (torch, batched): first click in the object, then in the error region."""
from __future__ import annotations

from typing import Optional, Tuple

import torch


def _random_voxel(region: torch.Tensor, generator: torch.Generator) -> Optional[torch.Tensor]:
    """Index (3,) of a voxel drawn uniformly from a boolean S^3 region, or None when it is empty."""
    candidates = torch.nonzero(region)
    if candidates.shape[0] == 0:
        return None
    pick = int(torch.randint(candidates.shape[0], (1,), generator=generator))
    return candidates[pick]


def _random_interior_voxel(region: torch.Tensor, radius: int, generator: torch.Generator, tries: int = 64
                           ) -> Optional[torch.Tensor]:
    """A voxel drawn uniformly from those whose (2 radius + 1)^3 cube lies inside ``region`` (rejection sampling
    over up to ``tries`` region voxels), or None."""
    candidates = torch.nonzero(region)
    if candidates.shape[0] == 0:
        return None
    shape = region.shape
    for pick in torch.randint(candidates.shape[0], (tries,), generator=generator).tolist():
        voxel = candidates[pick]
        lo, hi = voxel - radius, voxel + radius + 1
        if any(int(a) < 0 or int(b) > n for a, b, n in zip(lo, hi, shape)):
            continue
        if bool(region[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].all()):
            return voxel
    return None


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
            voxel = _random_interior_voxel(error, 2, generator)
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
