"""DiceCE loss (as MONAI ``DiceCELoss(sigmoid=True, squared_pred=True)``) and a batch Dice metric."""
from __future__ import annotations

import torch
import torch.nn.functional as F

SMOOTH = 1e-5


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice (squared denominators, per sample and channel, averaged) + mean binary cross-entropy."""
    logits, target = logits.float(), target.float()
    probs = torch.sigmoid(logits)
    dims = tuple(range(2, logits.ndim))
    intersection = (probs * target).sum(dims)
    denominator = (probs * probs).sum(dims) + (target * target).sum(dims)
    dice = 1.0 - (2.0 * intersection + SMOOTH) / (denominator + SMOOTH)
    return dice.mean() + F.binary_cross_entropy_with_logits(logits, target)


@torch.no_grad()
def batch_dice(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Mean Dice of the masks ``logits > 0`` against binary ``target`` (1.0 when both are empty)."""
    pred, gt = logits > 0, target > 0.5
    dims = tuple(range(1, logits.ndim))
    inter = (pred & gt).sum(dims).float()
    total = pred.sum(dims).float() + gt.sum(dims).float()
    scores = torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))
    return float(scores.mean())
