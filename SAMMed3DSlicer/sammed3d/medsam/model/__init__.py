"""SAM ViT 2D network (MedSAM): image encoder, prompt encoder, mask decoder (segment-anything keys and signatures)."""
from .config import Sam2DConfig, config_from_state_dict
from .sam import Sam2D, build_sam_2d

__all__ = ["Sam2D", "Sam2DConfig", "build_sam_2d", "config_from_state_dict"]
