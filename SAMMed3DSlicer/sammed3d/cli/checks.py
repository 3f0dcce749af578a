"""Checks of the command line's inputs that print one-line notes or errors: markups points, non-finite voxels,
the overlay's plotting library. Output paths are checked by :mod:`sammed3d.output_paths`."""
from __future__ import annotations

import sys
from typing import List

from ..errors import PromptError, SamMed3DError


def markups_clicks(path, given: int = 0) -> List:
    """The clicks of a --points file; says how many points were skipped and why (unselected, no position).

    ``given``: clicks from --point/--negative; when there are none and the file has no usable point, the error
    names what was skipped.
    """
    from ..markups import read_markups

    points = read_markups(path)
    skipped = points.skipped_text()
    if not points.clicks:
        if skipped:
            reason = "all %d point(s) were skipped: %s" % (points.skipped, skipped)
            advice = "select them in Slicer's Markups module" if points.unselected else "place them in Slicer"
        else:
            reason, advice = "it holds no point", "add points in Slicer"
        if not given:
            raise PromptError("%s: %s; %s, or use --point R A S" % (path, reason, advice))
        print("note: %s: %s" % (path, reason), file=sys.stderr)
    elif skipped:
        print("note: %s: using %d point(s), skipped %s" % (path, len(points.clicks), skipped), file=sys.stderr)
    return points.clicks


def warn_about_nonfinite_voxels(image, shown) -> int:
    """Print one warning when the image holds NaN or infinite voxels (the model sees 0 there); return their count."""
    from ..image_io import count_nonfinite_voxels

    count = count_nonfinite_voxels(image, shown)
    if count:
        total = 1
        for n in image.GetSize():
            total *= n
        print("warning: %s has %d NaN/infinite voxel(s) (%.1f%%); they are treated as 0"
              % (shown, count, 100.0 * count / total), file=sys.stderr)
    return count


def require_overlay_support() -> None:
    """--overlay draws with matplotlib: say so before any work when it is missing."""
    from ..overlay import overlay_available

    if not overlay_available():
        raise SamMed3DError("--overlay needs matplotlib: pip install matplotlib (or the [plot] extra)")
