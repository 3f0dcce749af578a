"""`load_model`: a checkpoint name or file -> an eval-mode model of the family and size its tensors describe.

SAM-Med3D (3D, `image_encoder.pos_embed` is 1 x g x g x g x C) or SAM ViT 2D / MedSAM (1 x g x g x C).
"""
import logging
from typing import Dict, Union

import torch

from .devices import resolve_device
from .errors import CheckpointError
from .model import SamMed3D, build_sam_med3d, config_from_state_dict
from .weights import read_state_dict, resolve_checkpoint

log = logging.getLogger(__name__)

POS_EMBED = "image_encoder.pos_embed"


def model_family(state_dict: Dict[str, torch.Tensor]) -> str:
    """"sam_med3d" or "medsam" (SAM ViT 2D), from the rank of the image encoder's position embedding."""
    if POS_EMBED not in state_dict:
        raise CheckpointError("not a SAM-Med3D checkpoint (nor a MedSAM one): it has no %r tensor" % POS_EMBED)
    rank = state_dict[POS_EMBED].dim()
    if rank == 5:
        return "sam_med3d"
    if rank == 4:
        return "medsam"
    raise CheckpointError("not a SAM-Med3D checkpoint (nor a MedSAM one): %s has shape %s"
                          % (POS_EMBED, tuple(state_dict[POS_EMBED].shape)))


def _load_strict(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor], family: str) -> torch.nn.Module:
    """Load tensors strictly: missing/unexpected keys and wrong shapes are one error listing them."""
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
        raise CheckpointError("the checkpoint does not fit %s (%s)" % (family, "; ".join(problems)))
    model.load_state_dict(state_dict, strict=True)
    return model


def model_from_state_dict(state_dict: Dict[str, torch.Tensor]) -> Union[SamMed3D, torch.nn.Module]:
    """Build the architecture the tensors describe (SAM-Med3D or SAM 2D) and load them strictly."""
    if model_family(state_dict) == "medsam":
        from .medsam.model import build_sam_2d
        from .medsam.model import config_from_state_dict as config_2d

        return _load_strict(build_sam_2d(config_2d(state_dict)), state_dict, "SAM 2D / MedSAM")
    return _load_strict(build_sam_med3d(config_from_state_dict(state_dict)), state_dict, "SAM-Med3D")


def load_model(checkpoint="turbo", device="cpu", progress=None):
    """Load SAM-Med3D or MedSAM weights; never executes code from the file.

    checkpoint: "turbo" (Hugging Face blueyo0/SAM-Med3D sam_med3d_turbo.pth, cached after the first download),
    "medsam" (Zenodo record 10689643 medsam_vit_b.pth, verified and cached after the first download),
    "demo" (the small SAM-Med3D model bundled with this package), or a path to an official-format .pth (a dict with
    `model_state_dict`, or a bare state dict such as segment-anything's / MedSAM's, `module.` prefixes tolerated) or
    a .safetensors file. The family (3D SAM-Med3D or 2D SAM/MedSAM) and size are read from the tensors.
    device: "cpu", "cuda", "mps" or "auto" (cuda, then mps, then cpu).
    progress: optional callback(bytes_done, bytes_total) while a named checkpoint downloads.
    """
    target = resolve_device(device)
    path = resolve_checkpoint(checkpoint, progress=progress)
    state_dict = read_state_dict(path)
    model = model_from_state_dict({k: v.float() for k, v in state_dict.items()})
    log.info("loaded %s (%s) on %s", path, model.config, target)
    return model.to(target).eval()
