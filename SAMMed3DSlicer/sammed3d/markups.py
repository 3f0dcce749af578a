"""Points from Slicer markups files (.mrk.json) and from the command line, as (RAS mm, positive) clicks.

A markups file states its `coordinateSystem`: "LPS" (Slicer 5 writes this) or "RAS" (older files); LPS positions
are converted to RAS (x, y negated); a file that does not say is read as LPS, Slicer's current default.
Unselected control points are ignored (Slicer's checkbox in the Markups module), as are points without a position.
A control point is NEGATIVE (background) when its label starts with "-" or its description is one of
"negative", "neg", "background", "exclude", "-" (case-insensitive); every other point is positive.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Tuple

import numpy as np

from .errors import PromptError

NEGATIVE_DESCRIPTIONS = {"negative", "neg", "background", "exclude", "-"}

Click = Tuple[Tuple[float, float, float], bool]


def is_negative(label: str, description: str) -> bool:
    return (label or "").strip().startswith("-") or (description or "").strip().lower() in NEGATIVE_DESCRIPTIONS


def read_markups_clicks(path) -> List[Click]:
    """Clicks (RAS mm, positive) of every selected control point of every markup in a .mrk.json file."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PromptError("markups file not found: %s" % path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PromptError("cannot read markups file %s: %s" % (path, str(error).splitlines()[0])) from None
    markups = document.get("markups") if isinstance(document, dict) else None
    if not isinstance(markups, list):
        raise PromptError("%s is not a Slicer markups file (no 'markups' list)" % path)
    clicks = []
    for markup in markups:
        system = str(markup.get("coordinateSystem", "LPS")).upper()
        if system not in ("LPS", "RAS"):
            raise PromptError("%s: unknown coordinateSystem %r (expected LPS or RAS)" % (path, system))
        flip = np.array([-1.0, -1.0, 1.0]) if system == "LPS" else np.ones(3)
        for point in markup.get("controlPoints") or []:
            position = point.get("position")
            if not point.get("selected", True) or position is None or point.get("positionStatus") == "undefined":
                continue
            ras = np.asarray(position, dtype=float).reshape(3) * flip
            positive = not is_negative(point.get("label", ""), point.get("description", ""))
            clicks.append((tuple(float(v) for v in ras), positive))
    return clicks
