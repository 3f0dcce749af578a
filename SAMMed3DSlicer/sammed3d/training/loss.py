"""DiceCE loss (as MONAI ``DiceCELoss(sigmoid=True, squared_pred=True)``) and a batch Dice metric."""
from __future__ import annotations

import torch
import torch.nn.functional as F

SMOOTH = 1e-5


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, balanced: bool = False) -> torch.Tensor:
    """Soft Dice (squared denominators, per sample and channel, averaged) + mean binary cross-entropy.

    ``balanced``: the cross-entropy is instead the mean of its averages over object and background voxels (per
    sample), so small objects are not drowned by background; this keeps a strong gradient where a from-scratch
    model has learnt to predict nothing at all (sigmoid saturated, soft Dice gradient vanishing).
    """
    logits, target = logits.float(), target.float()
    probs = torch.sigmoid(logits)
    dims = tuple(range(2, logits.ndim))
    intersection = (probs * target).sum(dims)
    denominator = (probs * probs).sum(dims) + (target * target).sum(dims)
    dice = 1.0 - (2.0 * intersection + SMOOTH) / (denominator + SMOOTH)
    if not balanced:
        return dice.mean() + F.binary_cross_entropy_with_logits(logits, target)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    positive = target.sum(dims).clamp(min=SMOOTH)
    negative = (1 - target).sum(dims).clamp(min=SMOOTH)
    ce = 0.5 * ((ce * target).sum(dims) / positive + (ce * (1 - target)).sum(dims) / negative)
    return dice.mean() + ce.mean()


@torch.no_grad()
def batch_dice(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Mean Dice of the masks ``logits > 0`` against binary ``target`` (1.0 when both are empty)."""
    pred, gt = logits > 0, target > 0.5
    dims = tuple(range(1, logits.ndim))
    inter = (pred & gt).sum(dims).float()
    total = pred.sum(dims).float() + gt.sum(dims).float()
    scores = torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))
    return float(scores.mean())
