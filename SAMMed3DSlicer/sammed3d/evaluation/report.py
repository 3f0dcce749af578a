"""Evaluation outputs: a resumable metrics.csv, summary.json, dice_vs_clicks.png and prediction files.

Every file is written so that an interrupted run loses nothing already reported: metrics rows are appended and
flushed one by one (a torn last line is dropped on resume), the other files are written to a temporary file and
moved into place.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional

import numpy as np
import SimpleITK as sitk

from ..atomic import atomic_path
from ..image_io import image_on_grid, write_image_atomic
from ..errors import SamMed3DError

FIELDS = ("case", "label", "label_name", "clicks", "dice", "nsd", "seconds")
_TYPES = {"case": str, "label": int, "label_name": str, "clicks": int, "dice": float, "nsd": float, "seconds": float}


def _atomic(path: str, suffix: str = ""):
    """:func:`sammed3d.atomic.atomic_path`, creating the destination folder first."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return atomic_path(path, suffix)


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder."""
    with _atomic(path) as temp:
        with open(temp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


class MetricsCsv(object):
    """Append-only metrics table with resume: rows already present are reported by :meth:`is_done`.

    Columns: case, label, label_name, clicks, dice, nsd, seconds. Opening an existing file keeps its complete rows
    (a partial last line from an interrupted run is removed); a file with other columns is refused.
    """

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self._rows = []  # type: List[Dict]
        self._done = set()
        if os.path.exists(self.path):
            self._load()

    def _load(self) -> None:
        try:
            with open(self.path, "r", encoding="utf-8", newline="") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise SamMed3DError("cannot read %s: %s" % (self.path, exc))
        if not text.strip():
            return
        lines = text.splitlines(True)
        complete = [line for line in lines if line.endswith("\n")]
        reader = csv.reader(io.StringIO("".join(complete)))
        header = next(reader, None)
        if header is None or tuple(header) != FIELDS:
            raise SamMed3DError(
                "%s is not a metrics table of this tool (columns %s); choose another output folder"
                % (self.path, ",".join(FIELDS))
            )
        for values in reader:
            row = self._parse(values)
            if row is not None:
                self._remember(row)
        if len(complete) != len(lines) or len(self._rows) != len(complete) - 1:
            self._rewrite()  # drop the torn or malformed lines so later appends start on a clean line

    @staticmethod
    def _parse(values: List[str]) -> Optional[Dict]:
        if len(values) != len(FIELDS):
            return None
        try:
            return OrderedDict((name, _TYPES[name](value)) for name, value in zip(FIELDS, values))
        except ValueError:
            return None

    def _remember(self, row: Dict) -> None:
        self._rows.append(row)
        self._done.add(self.key(row["case"], row["label"], row["clicks"]))

    def _rewrite(self) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(FIELDS)
        for row in self._rows:
            writer.writerow(self._format(row))
        write_text_atomic(self.path, buffer.getvalue())

    @staticmethod
    def key(case: str, label: int, clicks: int):
        return (str(case), int(label), int(clicks))

    @staticmethod
    def _format(row: Dict) -> List[str]:
        out = []
        for name in FIELDS:
            value = _TYPES[name](row[name])
            out.append(repr(value) if isinstance(value, float) else str(value))
        return out

    @property
    def rows(self) -> List[Dict]:
        """Every row, in file order, with typed values."""
        return list(self._rows)

    def is_done(self, case: str, label: int, clicks: int) -> bool:
        return self.key(case, label, clicks) in self._done

    def append(self, case: str, label: int, label_name: str, clicks: int, dice: float, nsd: float,
               seconds: float) -> None:
        """Add one row and flush it to disk (a row already present is an error: check :meth:`is_done`)."""
        row = OrderedDict(
            zip(FIELDS, (str(case), int(label), str(label_name), int(clicks), float(dice), float(nsd), float(seconds)))
        )
        key = self.key(case, label, clicks)
        if key in self._done:
            raise ValueError("metrics row %r is already recorded" % (key,))
        new_file = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        if new_file:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "a", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            if new_file:
                writer.writerow(FIELDS)
            writer.writerow(self._format(row))
            handle.flush()
            os.fsync(handle.fileno())
        self._remember(row)


def _mean(values: List[float]) -> Optional[float]:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else None


def summarize(rows: Iterable[Dict]) -> Dict:
    """Mean Dice / NSD per (label, click count), and overall per click count.

    ``overall`` gives both the mean over all rows (``dice``, ``nsd``) and the mean of the per-label means
    (``dice_label_mean``, ``nsd_label_mean``: every label weighs the same, as in per-class benchmark tables).
    """
    rows = list(rows)
    groups = OrderedDict()  # (label, name, clicks) -> rows
    for row in sorted(rows, key=lambda r: (int(r["label"]), str(r["label_name"]), int(r["clicks"]))):
        groups.setdefault((int(row["label"]), str(row["label_name"]), int(row["clicks"])), []).append(row)
    per_label = []
    for (label, name, clicks), members in groups.items():
        per_label.append(OrderedDict([
            ("label", label), ("label_name", name), ("clicks", clicks),
            ("dice", _mean([float(r["dice"]) for r in members])),
            ("nsd", _mean([float(r["nsd"]) for r in members])),
            ("seconds", _mean([float(r["seconds"]) for r in members])),
            ("n", len(members)),
        ]))
    overall = []
    for clicks in sorted(set(int(r["clicks"]) for r in rows)):
        members = [r for r in rows if int(r["clicks"]) == clicks]
        label_means = [entry for entry in per_label if entry["clicks"] == clicks]
        overall.append(OrderedDict([
            ("clicks", clicks),
            ("dice", _mean([float(r["dice"]) for r in members])),
            ("nsd", _mean([float(r["nsd"]) for r in members])),
            ("dice_label_mean", _mean([e["dice"] for e in label_means if e["dice"] is not None])),
            ("nsd_label_mean", _mean([e["nsd"] for e in label_means if e["nsd"] is not None])),
            ("n", len(members)),
            ("n_labels", len(label_means)),
        ]))
    return OrderedDict([
        ("n_rows", len(rows)),
        ("n_cases", len(set(str(r["case"]) for r in rows))),
        ("per_label", per_label),
        ("overall", overall),
    ])


def write_summary(rows: Iterable[Dict], path: str, extra: Optional[Dict] = None) -> Dict:
    """Write :func:`summarize` (plus ``extra`` entries, e.g. the run settings) as JSON; return the summary."""
    summary = summarize(rows)
    if extra:
        summary.update(extra)
    write_text_atomic(path, json.dumps(summary, indent=1) + "\n")
    return summary


def plot_dice_vs_clicks(summary: Dict, path: str, title: Optional[str] = None) -> bool:
    """Plot mean Dice against the number of clicks (one thin line per label, the overall mean in bold).

    Uses matplotlib's Agg canvas without touching the global backend. Returns False (with a warning) when
    matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn("matplotlib is not installed: skipping %s (pip install matplotlib)" % path)
        return False
    figure = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    lines = OrderedDict()
    for entry in summary["per_label"]:
        if entry["dice"] is not None:
            lines.setdefault((entry["label"], entry["label_name"]), []).append((entry["clicks"], entry["dice"]))
    few = len(lines) <= 12
    for (label, name), points in lines.items():
        xs, ys = zip(*points)
        axes.plot(xs, ys, marker="o", markersize=3, linewidth=1, alpha=0.8 if few else 0.35,
                  label=name if few else None)
    overall = [(e["clicks"], e["dice"]) for e in summary["overall"] if e["dice"] is not None]
    if overall:
        xs, ys = zip(*overall)
        axes.plot(xs, ys, color="black", marker="s", linewidth=2.5, label="mean (all rows)")
    axes.set_xlabel("clicks")
    axes.set_ylabel("Dice")
    axes.set_ylim(0, 1)
    axes.set_xticks(sorted(set(e["clicks"] for e in summary["overall"])))
    axes.grid(True, alpha=0.3)
    axes.set_title(title or "Dice vs clicks (%d cases)" % summary.get("n_cases", 0))
    if axes.get_legend_handles_labels()[1]:
        axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", frameon=False)
    with _atomic(path, suffix=".png") as temp:
        figure.savefig(temp, format="png", bbox_inches="tight")
    return True


def write_prediction(mask: np.ndarray, image: sitk.Image, path: str) -> None:
    """Save a boolean mask (numpy order, ``image``'s grid) as a uint8 0/1 label file with ``image``'s geometry."""
    mask = np.asarray(mask)
    if mask.shape != tuple(reversed(image.GetSize())):
        raise ValueError("mask shape %s does not match the image grid %s" % (mask.shape, image.GetSize()[::-1]))
    label = image_on_grid(mask.astype(np.uint8), image)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_image_atomic(label, path)
