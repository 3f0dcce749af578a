"""The box protocol (MedSAM's evaluation): one box per object, from its label, jittered and seeded.

The key slice is the middle of the label's k range (the label slice nearest to it when the object skips that
slice); the box is the label's bounding box on that slice with each side moved outward by a random 0..`jitter`
pixels (MedSAM's training perturbation), and it spans the label's k range, so the session's key slice is the same.
"""
from __future__ import annotations

import zlib

import numpy as np

from ..geometry import index_to_ras
from ..prompts import Box


def box_rng(seed: int, case_id: str, label: int) -> np.random.Generator:
    """A generator seeded from (seed, case id, label): results do not depend on the order objects are evaluated."""
    return np.random.default_rng([int(seed), zlib.crc32(str(case_id).encode()), int(label)])


def label_box(gt_kji: np.ndarray, image, rng: np.random.Generator, jitter: int = 5) -> Box:
    """The RAS box of one object (boolean [k, j, i] mask in `image`'s grid)."""
    slices = np.nonzero(gt_kji.any(axis=(1, 2)))[0]
    first, last = int(slices.min()), int(slices.max())
    middle = int(np.floor((first + last) / 2 + 0.5))
    key = int(slices[np.argmin(np.abs(slices - middle))])
    rows, columns = np.nonzero(gt_kji[key])
    shift = rng.integers(0, jitter + 1, size=4)
    height, width = gt_kji.shape[1:]
    x0, y0 = max(0, columns.min() - shift[0]), max(0, rows.min() - shift[1])
    x1, y1 = min(width - 1, columns.max() + shift[2]), min(height - 1, rows.max() + shift[3])
    low = index_to_ras(image, np.array([x0, y0, first], dtype=float))
    high = index_to_ras(image, np.array([x1, y1, last], dtype=float))
    return Box(tuple(low), tuple(high))
