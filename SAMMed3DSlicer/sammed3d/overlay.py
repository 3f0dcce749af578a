"""A quick-look PNG: axial, coronal and sagittal slices through a point, with the mask outlined in colour.

Slices are shown in radiological convention (patient right on the left of the screen, anterior and superior up)
with square millimetres, whatever the image's orientation and spacing. Written with SimpleITK (no plotting library).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import geometry
from .image_io import write_image_atomic

PANEL_MM_PER_PIXEL = 1.0


def _window(array: np.ndarray) -> np.ndarray:
    """CT-like images: soft-tissue window; others: 1st-99th percentile."""
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return np.zeros(array.shape, dtype=np.uint8)
    lo, hi = np.percentile(finite, [1, 99])
    if lo < -500:  # Hounsfield units
        lo, hi = -160.0, 240.0
    scaled = (np.nan_to_num(array, nan=lo) - lo) / max(hi - lo, 1e-6)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def _panel(image: sitk.Image, mask: sitk.Image, centre_ras, axes_ras) -> np.ndarray:
    """Resample one plane through `centre_ras`: columns along axes_ras[0], rows along axes_ras[1] (RAS vectors)."""
    extent = np.linalg.norm(np.asarray(image.GetSize()) * np.asarray(image.GetSpacing()))
    n = int(min(512, extent / PANEL_MM_PER_PIXEL))
    u, v = (geometry.LPS_TO_RAS @ np.asarray(a, dtype=float) for a in axes_ras)  # RAS -> LPS vectors
    w = np.cross(u, v)
    centre_lps = geometry.ras_to_lps(np.asarray(centre_ras, dtype=float))
    reference = sitk.Image([n, n, 1], sitk.sitkFloat32)
    reference.SetSpacing([PANEL_MM_PER_PIXEL] * 3)
    reference.SetDirection(np.column_stack([u, v, w]).ravel().tolist())
    reference.SetOrigin((centre_lps - (u + v) * (n - 1) / 2.0 * PANEL_MM_PER_PIXEL).tolist())
    values = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), reference, sitk.Transform(), sitk.sitkLinear, np.nan)
    labels = sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(values)[0], sitk.GetArrayFromImage(labels)[0] > 0


def write_overlay_png(image: sitk.Image, mask: sitk.Image, centre_ras, path) -> Path:
    """Three orthogonal slices through `centre_ras` with the mask's outline and a translucent fill."""
    planes = [((-1, 0, 0), (0, -1, 0)),  # axial: right on the left, anterior up
              ((-1, 0, 0), (0, 0, -1)),  # coronal: superior up
              ((0, -1, 0), (0, 0, -1))]  # sagittal: anterior on the left
    panels = []
    for axes in planes:
        values, inside = _panel(image, mask, centre_ras, axes)
        rows, cols = np.nonzero(np.isfinite(values))
        if rows.size:  # crop to the image's footprint in this plane
            crop = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
            values, inside = values[crop], inside[crop]
        grey = _window(values)
        rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
        edge = inside & ~(np.roll(inside, 1, 0) & np.roll(inside, -1, 0) & np.roll(inside, 1, 1) & np.roll(inside, -1, 1))
        rgb[inside] = 0.65 * rgb[inside] + 0.35 * np.array([255, 200, 0])
        rgb[edge] = [255, 220, 0]
        panels.append(rgb.astype(np.uint8))
    height = max(p.shape[0] for p in panels)
    canvas = np.zeros((height, sum(p.shape[1] for p in panels) + 8 * (len(panels) - 1), 3), dtype=np.uint8)
    column = 0
    for panel in panels:
        canvas[: panel.shape[0], column : column + panel.shape[1]] = panel
        column += panel.shape[1] + 8
    return write_image_atomic(sitk.GetImageFromArray(canvas, isVector=True), path, compress=False,
                              suffixes=(".png",))
