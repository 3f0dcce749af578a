"""Boxes from Slicer ROI markups files (.mrk.json): centre + size + orientation -> an RAS :class:`~.prompts.Box`.

Slicer writes an ROI as `center`, `size` (mm along the ROI's own axes) and `orientation` (3 x 3, row-major, columns =
the ROI axes) in the file's `coordinateSystem` ("LPS" in Slicer 5, "RAS" in older files; LPS when absent). An
oblique ROI becomes the RAS-aligned box around its 8 corners.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import PromptError
from .markups import read_markups_list
from .prompts import Box


def _vector(markup: dict, key: str, count: int, path: Path) -> np.ndarray:
    try:
        values = np.asarray(markup[key], dtype=float).reshape(-1)
    except (KeyError, TypeError, ValueError):
        raise PromptError("%s: the ROI has no valid %r" % (path, key)) from None
    if values.size != count or not np.all(np.isfinite(values)):
        raise PromptError("%s: the ROI's %r must be %d finite numbers" % (path, key, count))
    return values


def read_roi_box(path) -> Box:
    """The RAS box of the single ROI markup in a Slicer .mrk.json file."""
    path = Path(path)
    markups = read_markups_list(path, "ROI file")
    rois = [m for m in markups if isinstance(m, dict) and str(m.get("type", "")).upper() == "ROI"]
    if len(rois) != 1:
        raise PromptError("%s holds %d ROI markups; exactly one is needed" % (path, len(rois)))
    roi = rois[0]
    system = str(roi.get("coordinateSystem", "LPS")).upper()
    if system not in ("LPS", "RAS"):
        raise PromptError("%s: unknown coordinateSystem %r (expected LPS or RAS)" % (path, system))
    centre = _vector(roi, "center", 3, path)
    size = _vector(roi, "size", 3, path)
    if np.any(size < 0):
        raise PromptError("%s: the ROI has a negative size %s" % (path, tuple(size)))
    axes = _vector(roi, "orientation", 9, path).reshape(3, 3) if "orientation" in roi else np.eye(3)
    signs = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], dtype=float)
    corners = centre + (signs * size / 2) @ axes.T
    if system == "LPS":
        corners = corners * np.array([-1.0, -1.0, 1.0])
    return Box(tuple(corners.min(axis=0)), tuple(corners.max(axis=0)))
