"""Contrast augmentation for training crops, so that a model trained on CT also reads MR (and other contrasts).

:func:`remap_contrast` turns a crop's raw intensities (CT HU, MR units, ...) into a random new "modality" before
the usual z-normalisation: a random, generally non-monotone intensity curve (inversions included) that keeps the
darkest tissue (air) dark, as in any MR; optionally SynthSeg-style per-label intensities (each labelled structure
of the crop gets its own random brightness, keeping a scaled version of its texture); then gamma, a smooth
multiplicative bias field, blur or thick-slice smoothing along one axis, and Rician-like noise, ending in positive
arbitrary units. Padding (outside the image) stays 0. numpy and SimpleITK only.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import SimpleITK as sitk


def remap_contrast(raw: np.ndarray, valid: np.ndarray, label_map: Optional[np.ndarray],
                   rng: np.random.Generator, per_label_prob: float = 0.5) -> np.ndarray:
    """A randomly re-contrasted copy of ``raw`` (S^3 float32, 0 outside ``valid``); ``label_map``: S^3 ints or None."""
    if not valid.any():
        return raw
    inside = raw[valid]
    lo, hi = np.percentile(inside, [0.5, 99.5])
    if not hi > lo:
        return raw
    x = np.clip((raw - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    y = _random_curve(rng)(x)
    if label_map is not None and rng.random() < per_label_prob:
        y = _per_label_intensities(x, y, label_map, valid, rng)
    y = np.clip(y, 0.0, None) ** np.float32(np.exp(rng.normal(0.0, 0.3)))
    if rng.random() < 0.7:
        y = y * _bias_field(raw.shape, rng, rng.uniform(0.1, 0.6))
    if rng.random() < 0.3:
        y = _thick_slices(y, int(rng.integers(2, 5)), int(rng.choice([0, 1, 2], p=[0.15, 0.15, 0.7])))
    if rng.random() < 0.5:
        y = _blur(y, rng.uniform(0.3, 1.2))
    scale = float(np.percentile(y[valid], 99)) or 1.0
    sigma = rng.uniform(0.0, 0.06) * scale
    if sigma > 0:  # magnitude of complex Gaussian noise: Rician in dark regions, as MR
        y = np.hypot(y + sigma * rng.standard_normal(y.shape).astype(np.float32),
                     sigma * rng.standard_normal(y.shape).astype(np.float32))
    out = (y / scale * rng.uniform(100.0, 1000.0)).astype(np.float32)
    out[~valid] = 0.0
    return out


def _random_curve(rng: np.random.Generator):
    """A random piecewise-linear map of [0, 1] (4-9 knots, non-monotone in general); air usually stays darkest."""
    knots = int(rng.integers(4, 10))
    xs = np.concatenate([[0.0], np.sort(rng.uniform(0.05, 0.95, knots - 2)), [1.0]])
    ys = rng.uniform(0.05, 1.0, knots)
    if rng.random() < 0.85:
        ys[0] = rng.uniform(0.0, 0.05)  # background / air dark
    if rng.random() < 0.3:
        ys = np.sort(ys) if rng.random() < 0.5 else np.concatenate([ys[:1], np.sort(ys[1:])[::-1]])
    xs, ys = xs.astype(np.float32), ys.astype(np.float32)
    return lambda values: np.interp(values, xs, ys).astype(np.float32)


def _per_label_intensities(x, y, label_map, valid, rng):
    """SynthSeg-style: every label present gets a random mean intensity and a scaled copy of its own texture."""
    out = y.copy()
    for value in np.unique(label_map[valid]):
        if value == 0:
            continue
        mask = (label_map == value) & valid
        texture = x[mask] - np.float32(np.median(x[mask]))
        out[mask] = rng.uniform(0.05, 1.0) + rng.uniform(-1.5, 1.5) * texture
    return out


def _bias_field(shape, rng, strength):
    coarse = sitk.GetImageFromArray(rng.standard_normal((4, 4, 4)).astype(np.float32))
    coarse.SetSpacing([s / 3.0 for s in shape[::-1]])
    coarse.SetOrigin([-s / 6.0 for s in shape[::-1]])
    reference = sitk.Image([int(n) for n in shape[::-1]], sitk.sitkFloat32)
    field = sitk.Resample(coarse, reference, sitk.Transform(), sitk.sitkBSpline, 0.0)
    return np.exp(np.float32(strength) * sitk.GetArrayFromImage(field)).astype(np.float32)


def _blur(y, sigma_voxels):
    image = sitk.GetImageFromArray(y.astype(np.float32))
    return sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, float(sigma_voxels)))


def _thick_slices(y, factor, axis):
    """Average ``factor`` neighbouring planes along ``axis`` and interpolate back (a thick-slice acquisition)."""
    moved = np.moveaxis(y, axis, 0)
    n = moved.shape[0] // factor * factor
    if n < 2 * factor:
        return y
    coarse = moved[:n].reshape((n // factor, factor) + moved.shape[1:]).mean(axis=1)
    centres = (np.arange(n // factor) + 0.5) * factor - 0.5
    positions = np.arange(moved.shape[0])
    lower = np.clip(np.searchsorted(centres, positions) - 1, 0, len(centres) - 2)
    weight = np.clip((positions - centres[lower]) / factor, 0.0, 1.0).astype(np.float32)
    shape = (-1,) + (1,) * (moved.ndim - 1)
    result = coarse[lower] * (1 - weight.reshape(shape)) + coarse[lower + 1] * weight.reshape(shape)
    return np.moveaxis(result.astype(np.float32), 0, axis)
