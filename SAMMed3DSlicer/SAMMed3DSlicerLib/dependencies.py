"""Which Python packages SAM-Med3D needs inside Slicer, which are missing or too old, and how to install them.

The decisions live here (no Slicer needed, tested); the widget only asks the user, runs the steps outside any
MRML/VTK callback (deferred by a single-shot timer) and shows failures in a dialog.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from typing import Callable, List, Optional, Tuple

#: Oldest torch the engine supports (``torch.inference_mode``, ``scaled_dot_product_attention``...).
MIN_TORCH_VERSION = (2, 1)
TORCH_REQUIREMENT = "torch>=%d.%d" % MIN_TORCH_VERSION
# (import name, distribution name, pip requirement). torch goes through Slicer's PyTorch extension when present.
PIP_PACKAGES = (
    ("huggingface_hub", "huggingface_hub", "huggingface_hub>=0.20"),
    ("safetensors", "safetensors", "safetensors>=0.4"),
    ("tqdm", "tqdm", "tqdm>=4.60"),
    ("SimpleITK", "SimpleITK", "SimpleITK>=2.2"),  # bundled with Slicer; listed for completeness
)


def is_importable(module_name: str) -> bool:
    """True when ``module_name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False


def parse_version(text: Optional[str]) -> Tuple[int, ...]:
    """Leading numeric release of a version string: "2.13.0+cpu" -> (2, 13, 0); "" or None -> ()."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", text or "")
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def installed_torch_version() -> Optional[str]:
    """The installed torch's version (from its metadata, without importing torch), None if not installed."""
    if not is_importable("torch"):
        return None
    try:
        from importlib.metadata import version

        return version("torch")
    except Exception:  # noqa: BLE001 - no metadata (e.g. a source build): trust the import
        return "unknown"


def torch_is_usable(version: Optional[str]) -> bool:
    """True when a torch of this version can run the engine (unknown versions are given the benefit)."""
    if version is None:
        return False
    parsed = parse_version(version)
    return not parsed or parsed >= MIN_TORCH_VERSION


def missing_packages() -> Tuple[bool, List[str]]:
    """(torch missing or too old?, pip requirements of the other missing packages)."""
    return (not torch_is_usable(installed_torch_version()),
            [requirement for name, _, requirement in PIP_PACKAGES if not is_importable(name)])


class InstallPlan(object):
    """What to install: ``torch`` (None, or the requirement), ``pip`` (other requirements), ``upgrade`` (an old
    torch is installed), and the question to ask the user."""

    def __init__(self, torch_version: Optional[str], pip_requirements: List[str]):
        self.torch_version = torch_version
        self.torch = None if torch_is_usable(torch_version) else TORCH_REQUIREMENT
        self.upgrade = self.torch is not None and torch_version is not None
        self.pip = list(pip_requirements)

    @classmethod
    def current(cls) -> "InstallPlan":
        return cls(installed_torch_version(), missing_packages()[1])

    @property
    def needed(self) -> bool:
        return bool(self.torch or self.pip)

    @property
    def restart_required(self) -> bool:
        """An old torch already imported in this process cannot be replaced without restarting Slicer."""
        return self.upgrade and "torch" in sys.modules

    def question(self) -> str:
        lines = []
        if self.torch:
            lines.append("PyTorch (%s; installed: %s)" % (self.torch, self.torch_version) if self.upgrade
                         else "PyTorch (%s)" % self.torch)
        lines.extend(self.pip)
        return ("SAM-Med3D needs these Python packages, not installed yet:\n  %s\n\nInstall them now? This downloads "
                "them (PyTorch is large) and may take several minutes." % "\n  ".join(lines))

    def run(self, pip_install: Callable[[str], None], install_torch: Optional[Callable[[str], bool]] = None) -> None:
        """Install: torch through ``install_torch(requirement)`` (Slicer's PyTorch extension, which picks the
        CUDA / CPU build; returns False when the user cancelled) or pip, then the other packages by pip. Raises
        what the installers raise; always invalidates the import caches so the new packages become importable."""
        try:
            if self.torch:
                if install_torch is not None:
                    if install_torch(self.torch) is False:
                        raise InstallCancelled("PyTorch was not installed.")
                else:
                    pip_install(("--upgrade " if self.upgrade else "") + self.torch)
            if self.pip:
                pip_install(" ".join(self.pip))
        finally:
            importlib.invalidate_caches()

    def remaining(self) -> "InstallPlan":
        """What is still missing after :meth:`run` (import caches invalidated first)."""
        importlib.invalidate_caches()
        return InstallPlan.current()


class InstallCancelled(Exception):
    """The user cancelled an installation step."""


class ReentryGuard(object):
    """``with guard:`` blocks that must not nest (a second install prompt while one runs); ``guard.busy``."""

    def __init__(self):
        self.busy = False

    def __enter__(self):
        if self.busy:
            raise RuntimeError("already running")
        self.busy = True
        return self

    def __exit__(self, *exc):
        self.busy = False
        return False
