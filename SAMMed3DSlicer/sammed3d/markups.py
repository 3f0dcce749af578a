"""Points from Slicer markups files (.mrk.json) and from the command line, as (RAS mm, positive) clicks.

A markups file states its `coordinateSystem`: "LPS" (Slicer 5 writes this) or "RAS" (older files); LPS positions
are converted to RAS (x, y negated); a file that does not say is read as LPS, Slicer's current default.
Only point lists (markups type "Fiducial", Slicer's point list) are clicks; curves, lines, angles, planes and ROIs
(boxes) are refused with a message. Unselected control points are skipped (Slicer's checkbox in the Markups module),
as are points without a position (``positionStatus`` "undefined"); :class:`MarkupsPoints` counts what was skipped.
A control point is NEGATIVE (background) when its label starts with "-" or its description is one of
"negative", "neg", "background", "exclude", "-" (case-insensitive); every other point is positive.
Malformed files (wrong JSON types: a position that is not three finite numbers, a label that is not text, ...)
raise a one-line PromptError.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Tuple

from .errors import PromptError

NEGATIVE_DESCRIPTIONS = {"negative", "neg", "background", "exclude", "-"}
#: Markups types whose control points are clicks ("Fiducial" is how Slicer stores a point list).
POINT_TYPES = {"fiducial", "pointlist"}

Click = Tuple[Tuple[float, float, float], bool]


@dataclass
class MarkupsPoints:
    """The clicks of a markups file and how many control points were skipped, and why."""

    clicks: List[Click] = field(default_factory=list)
    unselected: int = 0
    undefined: int = 0

    @property
    def skipped(self) -> int:
        return self.unselected + self.undefined

    def skipped_text(self) -> str:
        """E.g. "2 unselected, 1 without a position" ("" when nothing was skipped)."""
        parts = []
        if self.unselected:
            parts.append("%d unselected" % self.unselected)
        if self.undefined:
            parts.append("%d without a position" % self.undefined)
        return ", ".join(parts)


def is_negative(label: str, description: str) -> bool:
    return (label or "").strip().startswith("-") or (description or "").strip().lower() in NEGATIVE_DESCRIPTIONS


def _text(point: dict, key: str, where: str) -> str:
    """A control point's label or description: text, or absent (Slicer always writes text)."""
    value = point.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PromptError("%s: %s %s is not text" % (where, key, json.dumps(value)[:40]))
    return value


def _position(point: dict, where: str) -> Tuple[float, float, float]:
    position = point["position"]
    if not isinstance(position, (list, tuple)) or len(position) != 3:
        raise PromptError("%s: position %s is not 3 numbers" % (where, json.dumps(position)[:60]))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in position):
        raise PromptError("%s: position %s holds something other than numbers" % (where, json.dumps(position)[:60]))
    if not all(math.isfinite(v) for v in position):
        raise PromptError("%s: position %s is not finite" % (where, json.dumps(position)[:60]))
    return tuple(float(v) for v in position)


def _markup_points(markup, number: int, path: Path, result: MarkupsPoints) -> None:
    where = "%s, markup %d" % (path.name, number)
    if not isinstance(markup, dict):
        raise PromptError("%s is not a JSON object" % where)
    kind = markup.get("type", "Fiducial")
    if not isinstance(kind, str) or kind.strip().lower() not in POINT_TYPES:
        hint = " (a box, not clicks)" if str(kind).strip().lower() == "roi" else ""
        raise PromptError("%s has type %s%s; --points takes point lists (type Fiducial) only" % (where, kind, hint))
    system = markup.get("coordinateSystem", "LPS")
    if not isinstance(system, str) or system.upper() not in ("LPS", "RAS"):
        raise PromptError("%s: unknown coordinateSystem %s (expected LPS or RAS)" % (where, json.dumps(system)))
    flip = (-1.0, -1.0, 1.0) if system.upper() == "LPS" else (1.0, 1.0, 1.0)
    points = markup.get("controlPoints") or []
    if not isinstance(points, list):
        raise PromptError("%s: controlPoints is not a list" % where)
    for index, point in enumerate(points, 1):
        if not isinstance(point, dict):
            raise PromptError("%s, control point %d is not a JSON object" % (where, index))
        label = _text(point, "label", "%s, control point %d" % (where, index))
        here = "%s, control point %d%s" % (where, index, " (%s)" % label if label else "")
        selected = point.get("selected", True)
        if not isinstance(selected, bool):
            raise PromptError("%s: 'selected' is %s, not true/false" % (here, json.dumps(selected)))
        if point.get("position") is None or point.get("positionStatus") == "undefined":
            result.undefined += 1
            continue
        position = _position(point, here)
        if not selected:
            result.unselected += 1
            continue
        ras = tuple(v * f for v, f in zip(position, flip))
        result.clicks.append((ras, not is_negative(label, _text(point, "description", here))))


def read_markups_list(path, what: str = "markups file") -> list:
    """The `markups` list of a Slicer .mrk.json file; PromptError (naming the file as `what`) if unreadable."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PromptError("%s not found: %s" % (what, path)) from None
    except IsADirectoryError:
        raise PromptError("%s %s is a folder" % (what, path)) from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise PromptError("cannot read %s %s: %s" % (what, path, str(error).splitlines()[0])) from None
    markups = document.get("markups") if isinstance(document, dict) else None
    if not isinstance(markups, list):
        raise PromptError("%s is not a Slicer markups file (no 'markups' list)" % path)
    return markups


def read_markups(path) -> MarkupsPoints:
    """The clicks of every selected, placed control point of every point list in a .mrk.json file."""
    path = Path(path)
    markups = read_markups_list(path)
    result = MarkupsPoints()
    for number, markup in enumerate(markups, 1):
        _markup_points(markup, number, path, result)
    return result


def read_markups_clicks(path) -> List[Click]:
    """Clicks (RAS mm, positive) of every selected control point of every point list in a .mrk.json file."""
    return read_markups(path).clicks
