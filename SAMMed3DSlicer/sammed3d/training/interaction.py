"""One training forward pass: encode the crops, then simulate an interactive click session and sum the losses.

As the official protocol: every iteration adds a click (first in the object, then in the error region) and feeds the
previous low-res logits back as the mask prompt (the first iteration gets an all-zero mask); one iteration chosen
at random uses the mask prompt alone; each iteration's logits are upsampled (trilinear) to the crop and scored with
DiceCE. Wrapped as an ``nn.Module`` so DistributedDataParallel sees the whole pass.
"""
from __future__ import annotations

import contextlib
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .clicks import next_clicks
from .loss import batch_dice, dice_ce_loss


def amp_context(device: torch.device, enabled: bool):
    """Mixed precision for training: fp16 autocast on CUDA (with a GradScaler), bf16 elsewhere."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


class InteractiveTraining(nn.Module):
    """``forward(images, labels, generator) -> (loss, dice)`` for a SAM-Med3D ``model`` (B x 1 x S^3 inputs).

    ``iterations``: click iterations per sample (>= 1); ``mask_only``: one random iteration after the first uses
    the mask prompt without points; ``amp``: autocast the network (the loss is computed in float32);
    ``deep_clicks``: probability of a click deep inside the error region (see :func:`.clicks.next_clicks`);
    ``loss_size``: score the logits upsampled to this size per axis against area-downsampled labels (cheaper on
    CPUs; default: the crop size, as the official code). Clicks are then simulated at that resolution too (at the
    centre of the chosen coarse voxel), and the logged Dice is measured there; ``balanced_ce``: see
    :func:`.loss.dice_ce_loss`.
    ``dice`` is the mean Dice of the last iteration's mask (a float, for logging).
    """

    def __init__(self, model: nn.Module, iterations: int = 6, mask_only: bool = True, amp: bool = False,
                 deep_clicks: float = 0.0, loss_size: Optional[int] = None, balanced_ce: bool = False):
        super().__init__()
        if iterations < 1:
            raise ValueError("iterations must be >= 1")
        self.model = model
        self.iterations = int(iterations)
        self.mask_only = bool(mask_only)
        self.amp = bool(amp)
        self.deep_clicks = float(deep_clicks)
        self.loss_size = int(loss_size) if loss_size else None
        self.balanced_ce = bool(balanced_ce)

    def _decode(self, embedding, points, low_res):
        coords, labels = points if points is not None else (None, None)
        return self.model.decode(embedding, coords, labels, low_res)

    def forward(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                owners: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, float]:
        """images B x 1 x S^3; labels N x 1 x S^3 (one object each); owners: N image indices (default: N = B)."""
        device = images.device
        size = tuple(images.shape[-3:])
        low_size = tuple(n // 4 for n in size)
        with amp_context(device, self.amp):
            embedding = self.model.image_encoder(images)
        if owners is not None:
            embedding = embedding[owners.to(device)]  # several objects share one encoder pass
        low_res = torch.zeros((labels.shape[0], 1) + low_size, device=device)
        mask_only_at = -1
        if self.mask_only and self.iterations > 1:
            mask_only_at = 1 + int(torch.randint(self.iterations - 1, (1,), generator=generator))
        coords, point_labels = [], []
        pred = None
        loss_size = size if not self.loss_size or self.loss_size >= size[0] else (self.loss_size,) * 3
        targets = labels if loss_size == size else F.adaptive_avg_pool3d(labels.float(), loss_size)
        total = images.new_zeros(())
        logits = None
        scale = size[0] / float(loss_size[0])
        click_target = labels if loss_size == size else targets > 0.5
        for iteration in range(self.iterations):
            new_coords, new_labels = next_clicks(click_target, pred, generator, self.deep_clicks)
            coords.append((new_coords * scale + (scale - 1) / 2.0).to(device))  # voxel centre in crop coordinates
            point_labels.append(new_labels.to(device))
            points = None if iteration == mask_only_at else (torch.cat(coords, 1), torch.cat(point_labels, 1))
            with amp_context(device, self.amp):
                low = self._decode(embedding, points, low_res)
            logits = F.interpolate(low.float(), size=loss_size, mode="trilinear", align_corners=False)
            total = total + dice_ce_loss(logits, targets, self.balanced_ce)
            low_res = low.detach().float()
            pred = logits.detach() > 0
        return total / self.iterations, batch_dice(logits, click_target)
