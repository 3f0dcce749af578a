"""sammed3d: SAM-Med3D and MedSAM promptable 3D segmentation.

Exact, fast re-implementation of the official SAM-Med3D model, safe weight loading, ROI geometry, interactive
sessions, evaluation and fine-tuning. Runs in plain Python (3.9+) and inside 3D Slicer.
"""
__version__ = "0.1.0"

from .errors import SamMed3DError  # noqa: F401


def load_model(checkpoint="turbo", device="cpu", **kwargs):
    """Load SAM-Med3D or MedSAM weights into an eval-mode model; see :func:`sammed3d.loading.load_model`."""
    from .loading import load_model as _load_model

    return _load_model(checkpoint=checkpoint, device=device, **kwargs)


def __getattr__(name):
    # Lazy exports keep `import sammed3d` light (no torch import until something needs it).
    if name in ("extract_roi", "Roi"):
        from . import roi

        return getattr(roi, name)
    if name in ("InteractiveSession",):
        from . import session

        return getattr(session, name)
    if name in ("Box", "Point"):
        from . import prompts

        return getattr(prompts, name)
    if name == "MedSamSession":
        from .medsam.session import MedSamSession

        return MedSamSession
    if name in ("read_image", "write_image_atomic"):
        from . import image_io

        return getattr(image_io, name)
    raise AttributeError("module 'sammed3d' has no attribute %r" % name)
