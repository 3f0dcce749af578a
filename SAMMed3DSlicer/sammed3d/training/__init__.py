"""Interactive fine-tuning of SAM-Med3D as in the official protocol (``sammed3d train``).

Modules, one job each:

- :mod:`.crops`: 128^3, 1.5 mm RAS training crops (image + label on the same grid), random flips.
- :mod:`.clicks`: batched click simulation on the crops (torch).
- :mod:`.loss`: DiceCE loss and a Dice metric.
- :mod:`.interaction`: one forward pass = encoder + several click iterations with the mask fed back.
- :mod:`.checkpoint`: official-format checkpoints (atomic), resume, safetensors export.
- :mod:`.distributed`: torchrun / DDP set-up (gloo on CPU, nccl on CUDA).
- :mod:`.trainer`: :class:`TrainOptions` and :func:`train`.
"""
from .checkpoint import export_safetensors, load_checkpoint, save_checkpoint
from .crops import CropSampler
from .trainer import TrainOptions, train

__all__ = ["CropSampler", "TrainOptions", "export_safetensors", "load_checkpoint", "save_checkpoint", "train"]
