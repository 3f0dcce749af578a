"""The interactive click loop on one case: simulate a click, predict, repeat; keep the masks at chosen counts.

``predict_fn(clicks)`` receives every click so far (a list of :class:`~.clicks.Click`, the newest last, indices in
numpy order ``(k, j, i)`` of the case's image) and returns a boolean mask in that image's grid. It is called once per
click, so a stateful predictor (e.g. an interactive session feeding back its previous mask) may use only the newest
click. :func:`click_to_ras` converts a click to the RAS point an interactive session expects.
"""
from __future__ import annotations

import time
from collections import namedtuple
from typing import Callable, Iterable, List, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import SamMed3DError
from .clicks import Click

ClickResult = namedtuple("ClickResult", ["clicks", "mask", "seconds", "history"])
ClickResult.__doc__ = (
    "The prediction after ``clicks`` clicks: ``mask`` (bool array, image grid), ``seconds`` (predict_fn time summed "
    "over those clicks), ``history`` (the clicks actually placed; fewer than ``clicks`` if the mask became exact)."
)


def validate_click_counts(click_counts: Iterable[int]) -> List[int]:
    """Sorted, de-duplicated click counts; each must be a positive integer."""
    try:
        counts = sorted(set(int(c) for c in click_counts))
    except (TypeError, ValueError):
        raise SamMed3DError("click counts must be integers, got %r" % (click_counts,))
    if not counts or counts[0] < 1:
        raise SamMed3DError("click counts must be positive integers, got %r" % (click_counts,))
    return counts


def image_spacing_zyx(image: sitk.Image) -> Tuple[float, float, float]:
    """The image's voxel spacing in numpy array order (k, j, i)."""
    return tuple(float(s) for s in reversed(image.GetSpacing()))


def index_to_ras(image: sitk.Image, index_kji: Sequence[float]) -> np.ndarray:
    """Physical RAS position (mm) of a voxel given by its numpy index (k, j, i)."""
    k, j, i = (float(v) for v in index_kji)
    x, y, z = image.TransformContinuousIndexToPhysicalPoint((i, j, k))  # ITK physical space is LPS
    return np.array([-x, -y, z], dtype=float)


def click_to_ras(image: sitk.Image, click: Click) -> Tuple[np.ndarray, bool]:
    """``(ras_point, positive)`` for a simulated click on ``image``."""
    return index_to_ras(image, click.index), bool(click.positive)


def evaluate_case(
    predict_fn: Callable[[List[Click]], np.ndarray],
    image: sitk.Image,
    gt_mask: np.ndarray,
    clicker,
    click_counts: Iterable[int],
    use_spacing: bool = True,
) -> List[ClickResult]:
    """Run ``max(click_counts)`` simulated clicks on one object and return the prediction at each requested count.

    ``gt_mask`` is the object's boolean mask in ``image``'s grid (numpy order). The clicker sees the image spacing
    unless ``use_spacing`` is False. If a prediction becomes exactly the ground truth the loop stops and later
    counts repeat that mask (with no further clicks or time).
    """
    counts = validate_click_counts(click_counts)
    gt = np.asarray(gt_mask, dtype=bool)
    expected = tuple(reversed(image.GetSize()))
    if gt.shape != expected:
        raise ValueError("gt_mask shape %s does not match the image (%s in numpy order)" % (gt.shape, expected))
    spacing = image_spacing_zyx(image) if use_spacing else None
    pred = np.zeros_like(gt)
    history = []
    seconds = 0.0
    results = []
    for count in range(1, counts[-1] + 1):
        if len(history) == count - 1:  # still clicking (no exact mask yet)
            click = clicker.next_click(gt, pred, spacing)
            if click is not None:
                history.append(click)
                start = time.perf_counter()
                mask = predict_fn(list(history))
                seconds += time.perf_counter() - start
                pred = np.array(mask, dtype=bool)  # own copy: predict_fn may reuse its buffer
                if pred.shape != gt.shape:
                    raise ValueError("predict_fn returned shape %s, expected %s" % (pred.shape, gt.shape))
        if count in counts:
            results.append(ClickResult(count, pred, seconds, list(history)))
    return results
