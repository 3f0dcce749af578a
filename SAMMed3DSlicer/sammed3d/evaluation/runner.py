"""Evaluate a whole dataset: every case x label x click count, resumable, with all report files.

The predictor is supplied by the caller, so this module stays model-free: ``make_predict_fn(image, case, label)``
returns a fresh ``predict_fn`` (see :mod:`.loop`) for one object, e.g. an interactive session on ``image``.
"""
from __future__ import annotations

import json
import os
from typing import Callable, Dict, Iterable, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import SamMed3DError
from .clicks import make_clicker
from .datasets import Case, labels_present, load_label_in_image_grid, read_image
from .loop import evaluate_case, image_spacing_zyx, validate_click_counts
from .metrics import DEFAULT_NSD_TOLERANCE_MM, dice, nsd
from .report import MetricsCsv, plot_dice_vs_clicks, write_prediction, write_summary, write_text_atomic

METRICS_CSV = "metrics.csv"
SUMMARY_JSON = "summary.json"
SETTINGS_JSON = "settings.json"
PLOT_PNG = "dice_vs_clicks.png"
PREDICTIONS_DIR = "predictions"


def prediction_path(out_dir: str, case_id: str, label: int) -> str:
    """OUT/predictions/<case>/<label>.nii.gz (case ids of per-class datasets nest: <class>/<dataset>/<name>)."""
    return os.path.join(out_dir, PREDICTIONS_DIR, *case_id.split("/"), "%d.nii.gz" % int(label))


def select_labels(labels: Dict[int, str], wanted: Optional[Iterable]) -> Dict[int, str]:
    """The labels to evaluate: all, or those named by value (int or digit string) or by name."""
    if not wanted:
        return dict(labels)
    chosen = {}
    for item in wanted:
        text = str(item).strip()
        if text.isdigit() and int(text) in labels:
            chosen[int(text)] = labels[int(text)]
        else:
            matches = {v: n for v, n in labels.items() if n == text}
            chosen.update(matches)
    return dict(sorted(chosen.items()))


def check_labels_exist(cases: Sequence[Case], wanted: Optional[Iterable]) -> None:
    """Refuse label selections that match nothing in the dataset (a typo should not evaluate zero rows)."""
    if not wanted:
        return
    known = {}
    for case in cases:
        known.update(case.labels)
    for item in wanted:
        if not select_labels(known, [item]):
            names = ", ".join("%d=%s" % kv for kv in sorted(known.items()))
            raise SamMed3DError("label %r is not in the dataset (labels: %s)" % (item, names))


def run_settings(cases: Sequence[Case], settings: Optional[Dict], clicker: str, seed: int,
                 nsd_tolerance_mm: float, labels: Optional[Iterable]) -> Dict:
    """What a resumed run must share with the results already in its output folder (stored in settings.json)."""
    known = {}
    for case in cases:
        known.update(case.labels)
    chosen = sorted(select_labels(known, labels)) if labels else None
    result = dict(settings or {})
    result.update(clicker=clicker, seed=int(seed), nsd_tolerance_mm=float(nsd_tolerance_mm), labels=chosen)
    return result


def check_resume(out_dir: str, settings: Dict) -> None:
    """Refuse (one line) an output folder that holds results of a run with other settings; writes nothing."""
    _check_settings(out_dir, settings, write=False)


def _check_settings(out_dir: str, settings: Dict, write: bool = True) -> None:
    """Remember the run's settings; refuse to resume into a folder written with different ones."""
    path = os.path.join(out_dir, SETTINGS_JSON)
    settings = json.loads(json.dumps(settings))  # normalise (tuples -> lists)
    if os.path.isdir(out_dir) and not os.path.exists(path) and os.path.exists(os.path.join(out_dir, METRICS_CSV)):
        raise SamMed3DError("%s holds results without their settings (no %s); choose another output folder"
                            % (out_dir, SETTINGS_JSON))
    if os.path.exists(path):
        try:
            with open(path, "r", encoding="utf-8") as handle:
                previous = json.load(handle)
        except (OSError, ValueError) as exc:
            raise SamMed3DError("cannot read %s: %s" % (path, exc))
        changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
        if changed:
            raise SamMed3DError(
                "%s holds results of a run with other settings (%s); choose another output folder"
                % (out_dir, ", ".join("%s: %r -> %r" % (k, previous.get(k), settings.get(k)) for k in changed))
            )
    elif write:
        write_text_atomic(path, json.dumps(settings, indent=1, sort_keys=True) + "\n")


def evaluate_dataset(
    cases: Sequence[Case],
    make_predict_fn: Callable,
    out_dir: str,
    click_counts: Iterable[int],
    clicker: str = "random",
    seed: int = 0,
    labels: Optional[Iterable] = None,
    nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
    settings: Optional[Dict] = None,
    progress: bool = True,
) -> Dict:
    """Evaluate every labelled object of ``cases``; write metrics.csv, predictions, summary.json and the plot.

    Each object gets its own clicker seeded from (seed, case id, label), so results do not depend on order and a
    re-run skips the rows already in metrics.csv. ``settings`` (e.g. the checkpoint, dataset) is stored with
    clicker, seed, tolerance and label selection in settings.json; resuming with different settings is refused
    (other click counts are allowed: each object's clicks are the same sequence, so counts only add rows). The
    summary covers this run's cases, labels and click counts only. Labels absent from a case's label map are
    skipped. Returns the summary.
    """
    counts = validate_click_counts(click_counts)
    make_clicker(clicker, seed)  # validate the name early
    check_labels_exist(cases, labels)
    os.makedirs(out_dir, exist_ok=True)
    settings = run_settings(cases, settings, clicker, seed, nsd_tolerance_mm, labels)
    chosen = settings["labels"]
    _check_settings(out_dir, settings)
    table = MetricsCsv(os.path.join(out_dir, METRICS_CSV))

    def done(case_id, value):
        return all(table.is_done(case_id, value, n) for n in counts)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(cases), desc="evaluate", unit="case")
    try:
        for case in cases:
            wanted = select_labels(case.labels, labels)
            if bar is not None:
                bar.set_postfix_str(case.case_id)
            if wanted and not all(done(case.case_id, value) for value in wanted):
                _evaluate_one_case(case, wanted, make_predict_fn, out_dir, counts, clicker, seed,
                                   nsd_tolerance_mm, table, done)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    # The summary covers what this run asked for (cases, labels, click counts), so every click count is averaged
    # over the same objects even when earlier runs in this folder asked for more click counts.
    case_ids = set(case.case_id for case in cases)
    rows = [row for row in table.rows if row["clicks"] in counts and row["case"] in case_ids
            and (chosen is None or row["label"] in chosen)]
    summary = write_summary(rows, os.path.join(out_dir, SUMMARY_JSON),
                            extra={"settings": dict(settings, clicks=list(counts))})
    plot_dice_vs_clicks(summary, os.path.join(out_dir, PLOT_PNG))
    return summary


def _evaluate_one_case(case, wanted, make_predict_fn, out_dir, counts, clicker, seed, tolerance, table, done):
    image = read_image(case.image_path)
    label_array = _label_array(case, image)
    spacing = image_spacing_zyx(image)
    for value, name in labels_present(label_array, wanted).items():
        if done(case.case_id, value):
            continue
        gt = label_array == value
        results = evaluate_case(
            make_predict_fn(image, case, value), image, gt, make_clicker(clicker, seed, case.case_id, value), counts
        )
        write_prediction(results[-1].mask, image, prediction_path(out_dir, case.case_id, value))
        for result in results:
            if not table.is_done(case.case_id, value, result.clicks):
                table.append(case.case_id, value, name, result.clicks, dice(gt, result.mask),
                             nsd(gt, result.mask, spacing, tolerance), result.seconds)


def _label_array(case: Case, image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(load_label_in_image_grid(case.label_path, image))
