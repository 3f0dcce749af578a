"""A quick-look PNG: axial, coronal and sagittal slices through a point, the mask outlined, the clicks marked.

Slices are shown in radiological convention (patient right on the left of the screen, anterior and superior up)
with square millimetres, whatever the image's orientation and spacing; each panel is cropped to the body (CT:
above -500 HU; other images: above a tenth of their intensity range) plus the mask and the clicks, so thin volumes
do not leave most of the picture black. Clicks are drawn as green + (positive) and red x (negative), solid when
within a few millimetres of the slice, faint otherwise. One line at the bottom says what is what. Drawn with
matplotlib's Agg canvas (the ``plot`` extra) without touching the global pyplot state.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from . import geometry
from .atomic import atomic_path
from .errors import SamMed3DError

PANEL_MM_PER_PIXEL = 1.0
MARGIN_PIXELS = 8
#: (name, screen column direction, screen row direction) in RAS; rows run downward on screen.
PLANES = (("axial", (-1, 0, 0), (0, -1, 0), "R", "L", "A", "P"),
          ("coronal", (-1, 0, 0), (0, 0, -1), "R", "L", "S", "I"),
          ("sagittal", (0, -1, 0), (0, 0, -1), "A", "P", "S", "I"))


def overlay_available() -> bool:
    """True when matplotlib (the ``plot`` extra) can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _window(array: np.ndarray) -> Tuple[np.ndarray, bool]:
    """(grey values 0..1, is CT): soft-tissue window for CT-like images, else the 1st-99th percentile."""
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return np.zeros(array.shape, dtype=np.float32), False
    lo, hi = np.percentile(finite, [1, 99])
    ct = lo < -500  # Hounsfield units
    if ct:
        lo, hi = -160.0, 240.0
    scaled = (np.nan_to_num(array, nan=lo) - lo) / max(hi - lo, 1e-6)
    return np.clip(scaled, 0, 1).astype(np.float32), ct


def _body_threshold(image: sitk.Image) -> float:
    array = sitk.GetArrayViewFromImage(image)
    finite = np.asarray(array[np.isfinite(array)] if array.dtype.kind == "f" else array, dtype=np.float64)
    if finite.size == 0:
        return 0.0
    lo, hi = np.percentile(finite, [1, 99])
    return -500.0 if lo < -500 else float(lo + 0.1 * (hi - lo))


class _Plane(object):
    """One resampled plane through ``centre_ras``: values (NaN outside the image), mask, and click positions."""

    def __init__(self, image, mask, centre_ras, columns_ras, rows_ras):
        extent = np.linalg.norm(np.asarray(image.GetSize()) * np.asarray(image.GetSpacing()))
        n = int(max(16, min(512, extent / PANEL_MM_PER_PIXEL)))
        u, v = (geometry.LPS_TO_RAS @ np.asarray(a, dtype=float) for a in (columns_ras, rows_ras))  # RAS -> LPS
        self.u, self.v, self.w = u, v, np.cross(u, v)
        self.centre_lps = geometry.ras_to_lps(np.asarray(centre_ras, dtype=float))
        self.origin = self.centre_lps - (u + v) * (n - 1) / 2.0 * PANEL_MM_PER_PIXEL
        reference = sitk.Image([n, n, 1], sitk.sitkFloat32)
        reference.SetSpacing([PANEL_MM_PER_PIXEL] * 3)
        reference.SetDirection(np.column_stack([self.u, self.v, self.w]).ravel().tolist())
        reference.SetOrigin(self.origin.tolist())
        values = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), reference, sitk.Transform(), sitk.sitkLinear,
                               float("nan"))
        labels = sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        self.values = sitk.GetArrayFromImage(values)[0]
        self.inside = sitk.GetArrayFromImage(labels)[0] > 0
        self.offset = np.zeros(2)

    def pixel(self, point_ras) -> Tuple[float, float, float]:
        """(column, row, distance from the plane in mm) of a RAS point, in the cropped panel."""
        d = geometry.ras_to_lps(np.asarray(point_ras, dtype=float)) - self.origin
        column, row = d @ self.u / PANEL_MM_PER_PIXEL, d @ self.v / PANEL_MM_PER_PIXEL
        distance = (geometry.ras_to_lps(np.asarray(point_ras, dtype=float)) - self.centre_lps) @ self.w
        return column - self.offset[1], row - self.offset[0], float(distance)

    def crop(self, threshold: float, clicks) -> None:
        """Keep the body (values above ``threshold``), the mask and the clicks, with a small margin."""
        keep = (np.nan_to_num(self.values, nan=-np.inf) > threshold) | self.inside
        if not keep.any():
            keep = np.isfinite(self.values)
        rows, columns = np.nonzero(keep)
        if rows.size == 0:
            return
        points = [self.pixel(p)[:2] for p, _ in clicks]
        lo = np.array([rows.min(), columns.min()], dtype=float)
        hi = np.array([rows.max(), columns.max()], dtype=float)
        for column, row in points:
            lo, hi = np.minimum(lo, [row, column]), np.maximum(hi, [row, column])
        size = np.array(self.values.shape)
        lo = np.clip(np.floor(lo) - MARGIN_PIXELS, 0, size - 1).astype(int)
        hi = np.clip(np.ceil(hi) + MARGIN_PIXELS + 1, lo + 1, size).astype(int)
        self.values = self.values[lo[0]:hi[0], lo[1]:hi[1]]
        self.inside = self.inside[lo[0]:hi[0], lo[1]:hi[1]]
        self.offset = lo.astype(float)


def write_overlay_png(image: sitk.Image, mask: sitk.Image, centre_ras, path,
                      clicks: Sequence = ()) -> Path:
    """Three orthogonal slices through ``centre_ras`` with the mask (outline + fill) and ``clicks`` marked.

    ``clicks``: ((R, A, S), positive) pairs; the first click is usually ``centre_ras``. Written atomically.
    Raises SamMed3DError when matplotlib is missing or the file cannot be written.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise SamMed3DError("--overlay needs matplotlib: pip install matplotlib") from None
    path = Path(path)
    clicks = list(clicks) or [(tuple(centre_ras), True)]
    threshold = _body_threshold(image)
    near_mm = 2.0 + max(image.GetSpacing()) / 2.0
    planes = []
    for name, columns, rows, left, right, top, bottom in PLANES:
        plane = _Plane(image, mask, centre_ras, columns, rows)
        plane.crop(threshold, clicks)
        planes.append((name, plane, (left, right, top, bottom)))

    widths = [plane.values.shape[1] for _, plane, _ in planes]
    height = max(plane.values.shape[0] for _, plane, _ in planes)
    scale = min(2.0, max(1.0, 900.0 / sum(widths)))  # small images are enlarged to stay legible
    figure = Figure(figsize=((sum(widths) * scale + 40) / 100.0, (height * scale + 70) / 100.0), dpi=100,
                    facecolor="black")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(1, 3, width_ratios=widths, left=0.01, right=0.99, top=0.93, bottom=0.1, wspace=0.03)
    centre = np.asarray(centre_ras, dtype=float)
    for index, (name, plane, letters) in enumerate(planes):
        axes = figure.add_subplot(grid[0, index])
        axes.set_facecolor("black")
        grey, _ = _window(plane.values)
        axes.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if plane.inside.any():
            fill = np.zeros(plane.inside.shape + (4,), dtype=np.float32)
            fill[plane.inside] = (1.0, 0.85, 0.0, 0.3)  # translucent yellow
            axes.imshow(fill, interpolation="nearest")
            axes.contour(plane.inside.astype(float), levels=[0.5], colors=["yellow"], linewidths=1.0)
        for point, positive in clicks:
            column, row, distance = plane.pixel(point)
            axes.plot(column, row, marker="+" if positive else "x", markersize=11, markeredgewidth=2.2,
                      color="lime" if positive else "red", alpha=1.0 if abs(distance) <= near_mm else 0.35)
        axis = {"axial": 2, "coronal": 1, "sagittal": 0}[name]
        axes.set_title("%s  %s %.1f mm" % (name, "RAS"[axis], centre[axis]), color="white", fontsize=9, pad=3)
        left, right, top, bottom = letters
        for text, x, y in ((left, 0.01, 0.5), (right, 0.99, 0.5), (top, 0.5, 0.99), (bottom, 0.5, 0.01)):
            axes.text(x, y, text, color="cyan", fontsize=8, transform=axes.transAxes,
                      ha="left" if x < 0.1 else "right" if x > 0.9 else "center",
                      va="top" if y > 0.9 else "bottom" if y < 0.1 else "center")
        axes.set_xticks([])
        axes.set_yticks([])
        for spine in axes.spines.values():
            spine.set_visible(False)
    voxels = int((sitk.GetArrayViewFromImage(mask) > 0).sum())
    millilitres = voxels * float(np.prod(image.GetSpacing())) / 1000.0
    positives = sum(1 for _, positive in clicks if positive)
    legend = ("yellow: mask (%d voxels, %.1f ml)   green +: positive click (%d)   red x: negative click (%d)   "
              "faint: click off this slice" % (voxels, millilitres, positives, len(clicks) - positives))
    figure.text(0.5, 0.02, legend, color="white", fontsize=8, ha="center", va="bottom")
    try:
        with atomic_path(path, suffix=".png") as temp:
            figure.savefig(temp, format="png", facecolor="black")
    except OSError as error:
        raise SamMed3DError("cannot write %s: %s" % (path, error.strerror or error)) from None
    return path
