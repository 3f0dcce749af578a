"""Which Python packages SAM-Med3D needs inside Slicer and which are missing (no Slicer needed to ask)."""
from __future__ import annotations

import importlib.util
from typing import List, Tuple

# (import name, pip requirement). torch is installed through Slicer's PyTorch extension when it is present.
TORCH = ("torch", "torch>=2.1")
PIP_PACKAGES = (
    ("huggingface_hub", "huggingface_hub>=0.20"),
    ("safetensors", "safetensors>=0.4"),
    ("tqdm", "tqdm>=4.60"),
    ("SimpleITK", "SimpleITK>=2.2"),  # bundled with Slicer; listed for completeness
)


def is_importable(module_name: str) -> bool:
    """True when ``module_name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False


def missing_packages() -> Tuple[bool, List[str]]:
    """(torch missing?, pip requirements of the other missing packages)."""
    return (not is_importable(TORCH[0]),
            [requirement for name, requirement in PIP_PACKAGES if not is_importable(name)])
