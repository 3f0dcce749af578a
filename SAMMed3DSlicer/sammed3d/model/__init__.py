"""SAM-Med3D network: image encoder, prompt encoder, mask decoder (official state-dict keys and call signatures)."""
from .config import SamMed3DConfig, config_from_state_dict
from .sam import SamMed3D, build_sam_med3d

__all__ = ["SamMed3D", "SamMed3DConfig", "build_sam_med3d", "config_from_state_dict"]
