"""Device and precision choices: `auto` picks CUDA, then Apple MPS, then the CPU, and says what it picked."""
import contextlib
import logging

import torch

from .errors import SamMed3DError

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISION_CHOICES = ("fp32", "bf16", "fp16")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device="auto") -> torch.device:
    """`auto` -> cuda, else mps, else cpu; an explicit device must be available."""
    if isinstance(device, torch.device):
        return device
    name = str(device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            chosen = torch.device("cuda")
        elif _mps_available():
            chosen = torch.device("mps")
        else:
            chosen = torch.device("cpu")
        log.info("device auto: using %s", describe_device(chosen))
        return chosen
    kind = name.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise SamMed3DError("device cuda requested but this torch has no usable CUDA (torch %s)" % torch.__version__)
    if kind == "mps" and not _mps_available():
        raise SamMed3DError("device mps requested but Apple MPS is not available")
    if kind not in DEVICE_CHOICES:
        raise SamMed3DError("unknown device %r (choose from %s)" % (device, ", ".join(DEVICE_CHOICES)))
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    """Human-readable device name, e.g. 'cuda (NVIDIA RTX 4090)' or 'cpu (8 threads)'."""
    if device.type == "cuda":
        return "cuda (%s)" % torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return "cpu (%d threads)" % torch.get_num_threads()
    return device.type


def autocast(device: torch.device, precision: str = "fp32"):
    """Context for inference at `precision`: fp32 (exact, default) or opt-in bf16 / fp16 autocast (CUDA; bf16 on CPU).

    Reduced precision changes the logits slightly (see README, "Precision"); masks rarely change.
    """
    if precision not in PRECISION_CHOICES:
        raise SamMed3DError("unknown precision %r (choose from %s)" % (precision, ", ".join(PRECISION_CHOICES)))
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cpu" and precision == "fp16":
        raise SamMed3DError("fp16 autocast needs a GPU; use bf16 or fp32 on the CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
