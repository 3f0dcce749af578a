"""Safe weight loading: named checkpoints (Hugging Face download / bundled demo) and pickle-free state dict reading."""
from .hub import KNOWN_CHECKPOINTS, resolve_checkpoint
from .safe_load import read_state_dict, write_safetensors

__all__ = ["KNOWN_CHECKPOINTS", "read_state_dict", "resolve_checkpoint", "write_safetensors"]
