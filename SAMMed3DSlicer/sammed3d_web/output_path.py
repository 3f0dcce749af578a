"""Where the web app saves: OUT must end in .seg.nrrd and its folder must exist (checked before anything starts).

Free of Slicer, so the front process (``front.py``) checks OUT without loading it.
"""
from __future__ import annotations

from pathlib import Path

from sammed3d.errors import SamMed3DError

SEGMENTATION_SUFFIX = ".seg.nrrd"


def check_output_path(path) -> Path:
    """The output path if it ends in .seg.nrrd and its folder exists (else a one-line SamMed3DError)."""
    path = Path(path)
    if not path.name.lower().endswith(SEGMENTATION_SUFFIX) or len(path.name) <= len(SEGMENTATION_SUFFIX):
        raise SamMed3DError("cannot write %s: the output must end in %s" % (path, SEGMENTATION_SUFFIX))
    if not path.absolute().parent.is_dir():
        raise SamMed3DError("cannot write %s: folder %s does not exist" % (path, path.absolute().parent))
    return path
