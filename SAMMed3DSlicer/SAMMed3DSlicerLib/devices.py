"""Torch device choice: "auto" picks CUDA, then Apple MPS, then CPU."""
from __future__ import annotations


def resolve_device(device: str = "auto") -> str:
    """The concrete torch device name for a user choice ("auto", "cpu", "cuda", "cuda:1", "mps")."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def available_devices() -> list:
    """Device choices to offer in the UI, "auto" first."""
    import torch

    choices = ["auto", "cpu"]
    if torch.cuda.is_available():
        choices += ["cuda:%d" % index for index in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        choices.append("mps")
    return choices
