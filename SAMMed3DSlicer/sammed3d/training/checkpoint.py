"""Training checkpoints in the official SAM-Med3D structure, written atomically; resume; export to safetensors.

The file is a ``torch.save`` dict with the official keys: ``epoch`` (here: optimizer steps done), ``model_state_dict``
(no DDP ``module.`` prefix), ``optimizer_state_dict``, ``lr_scheduler_state_dict``, ``losses``, ``dices`` (per step),
``best_loss``, ``best_dice``, ``args`` (an ``argparse.Namespace`` of plain values) and ``used_datas``. It loads with
``torch.load(weights_only=True)`` plus the allow-list in :mod:`sammed3d.weights.safe_load`, in the official code
(medim) and in :func:`sammed3d.load_model`.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

import torch

from ..errors import CheckpointError
from ..weights import read_state_dict, write_safetensors
from ..atomic import atomic_path
from ..weights.safe_load import read_pickled_checkpoint

CHECKPOINT_NAME = "checkpoint.pth"
OFFICIAL_KEYS = (
    "epoch", "model_state_dict", "optimizer_state_dict", "lr_scheduler_state_dict", "losses", "dices",
    "best_loss", "best_dice", "args", "used_datas",
)


def plain_namespace(values: Mapping[str, object]) -> argparse.Namespace:
    """An ``argparse.Namespace`` holding only None/bool/int/float/str and lists of them (safe to unpickle)."""

    def plain(value):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        return str(value)

    return argparse.Namespace(**{k: plain(v) for k, v in values.items() if not callable(v)})


def save_checkpoint(
    path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    step: int,
    losses: Sequence[float],
    dices: Sequence[float],
    args: argparse.Namespace,
    used_datas: Sequence[str],
) -> Path:
    """Write the official-format checkpoint to ``path`` atomically (temp file in the same folder + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "epoch": int(step),
        "model_state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer_state_dict": optimizer.state_dict(),
        "lr_scheduler_state_dict": scheduler.state_dict(),
        "losses": [float(x) for x in losses],
        "dices": [float(x) for x in dices],
        "best_loss": float(min(losses)) if losses else float("inf"),
        "best_dice": float(max(dices)) if dices else 0.0,
        "args": args,
        "used_datas": [str(x) for x in used_datas],
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path) -> Dict[str, object]:
    """Read a training checkpoint safely (weights_only + allow-list); CheckpointError if it is not one."""
    state = read_pickled_checkpoint(path)
    if not isinstance(state, dict) or not all(key in state for key in ("epoch", "model_state_dict")):
        raise CheckpointError("%s is not a training checkpoint (no epoch / model_state_dict)" % path)
    return state


def export_safetensors(checkpoint, out, half: bool = False, metadata: Optional[Dict[str, str]] = None) -> Path:
    """Model weights of a checkpoint (any format :func:`read_state_dict` reads) -> a .safetensors file.

    ``half=True`` stores float16 (half the size; :func:`sammed3d.load_model` upcasts to float32).
    """
    tensors = read_state_dict(checkpoint)
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    return write_safetensors(tensors, out, metadata=metadata)
