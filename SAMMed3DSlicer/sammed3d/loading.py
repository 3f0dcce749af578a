"""`load_model`: a checkpoint name or file -> an eval-mode SAM-Med3D of the right size on the right device."""
import logging
from typing import Dict

import torch

from .devices import resolve_device
from .errors import CheckpointError
from .model import SamMed3D, build_sam_med3d, config_from_state_dict
from .weights import read_state_dict, resolve_checkpoint

log = logging.getLogger(__name__)


def model_from_state_dict(state_dict: Dict[str, torch.Tensor]) -> SamMed3D:
    """Build the architecture the tensors describe and load them strictly (missing/unexpected keys are an error)."""
    model = build_sam_med3d(config_from_state_dict(state_dict))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state_dict) if tuple(expected[k].shape) != tuple(state_dict[k].shape))
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
        if keys:
            shown = ", ".join(keys[:8]) + (" ... (%d in all)" % len(keys) if len(keys) > 8 else "")
            problems.append("%s: %s" % (label, shown))
    if problems:
        raise CheckpointError("the checkpoint does not fit SAM-Med3D (%s)" % "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)
    return model


def load_model(checkpoint="turbo", device="cpu", progress=None) -> SamMed3D:
    """Load SAM-Med3D weights; never executes code from the file.

    checkpoint: "turbo" (Hugging Face blueyo0/SAM-Med3D sam_med3d_turbo.pth, cached after the first download),
    "demo" (the small model bundled with this package), or a path to an official-format .pth (a dict with
    `model_state_dict`, or a bare state dict, `module.` prefixes tolerated) or a .safetensors file.
    device: "cpu", "cuda", "mps" or "auto" (cuda, then mps, then cpu).
    progress: optional callback(bytes_done, bytes_total) while "turbo" downloads.
    """
    target = resolve_device(device)
    path = resolve_checkpoint(checkpoint, progress=progress)
    state_dict = read_state_dict(path)
    model = model_from_state_dict({k: v.float() for k, v in state_dict.items()})
    log.info("loaded %s (%s) on %s", path, model.config, target)
    return model.to(target).eval()
