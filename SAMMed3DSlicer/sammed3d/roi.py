"""Extract the model's 128^3, 1.5 mm ROI around a click, sampled straight from the original image.

The official SAM-Med3D preprocessing (SPEC section 4) resamples the *whole* image to 1.5 mm (torchio ``Resample``:
same direction, ``floor(size * spacing / 1.5)`` voxels, field-of-view centre kept), reorients it to RAS canonical
(torchio ``ToCanonical``), crops/pads 128^3 around the target (torchio ``CropOrPad``, padding 0) and z-normalises
with the mean and std of the voxels > 0. :func:`extract_roi` reproduces that result without resampling the volume:

* It computes the official 1.5 mm grid analytically (:func:`official_grid`) and places the ROI on it, so ROI voxel
  centres coincide with the official ones (same axes, same spacing, same phase; oblique images stay oblique exactly
  as after ``ToCanonical``). The target is the official grid voxel nearest to the click; as ``CropOrPad`` does for
  a one-voxel mask, that voxel becomes ROI index ``size // 2`` (64) on every axis.
* Only the ROI's 128^3 points are interpolated (SimpleITK linear, from the original image). Points outside the
  official resampled grid are 0, as the official padding. The values inside equal the official ones up to float
  rounding, since both are linear interpolations of the same image at the same points.
* Z-normalisation uses the mean and (unbiased) std of ROI voxels > 0, as torchio ``ZNormalization``. Fallbacks,
  where the official code would fail: fewer than 2 voxels > 0 or zero std -> statistics over all ROI voxels; a
  constant ROI -> all zeros. Non-finite voxels (NaN, +-inf) of the source image are treated as 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import SimpleITK as sitk
import torch

from . import geometry
from .errors import PromptError
from .image_io import validate_image

ROI_SIZE = 128
ROI_SPACING = 1.5


@dataclass(frozen=True)
class SourceGeometry:
    """Grid of the original image: size (i, j, k), spacing, origin (LPS) and 3x3 LPS direction."""

    size: Tuple[int, int, int]
    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float]
    direction: Tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> "SourceGeometry":
        return cls(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                   tuple(image.GetDirection()))

    @property
    def affine_lps(self) -> np.ndarray:
        """4x4 index (i, j, k) -> LPS."""
        return geometry.make_affine(self.origin, self.spacing, self.direction)

    @property
    def affine(self) -> np.ndarray:
        """4x4 index (i, j, k) -> RAS."""
        return geometry.lps_affine_to_ras(self.affine_lps)

    def reference_image(self, index=(0, 0, 0), size=None, pixel_type=sitk.sitkUInt8) -> sitk.Image:
        """An empty image on this grid, or on the sub-grid starting at ``index`` with ``size`` voxels."""
        size = self.size if size is None else size
        image = sitk.Image([int(n) for n in size], pixel_type)
        image.SetSpacing(self.spacing)
        image.SetDirection(self.direction)
        image.SetOrigin(tuple(geometry.apply_affine(self.affine_lps, np.asarray(index, dtype=float))))
        return image


@dataclass(frozen=True)
class OfficialGrid:
    """The 1.5 mm grid the official pipeline resamples the whole image onto, in RAS canonical axis order.

    ``affine`` maps its index to RAS; ``size`` is in canonical order. Canonical axis ``ras_axis[a]`` comes from
    source axis ``a`` (index i, j, k), reversed when ``sign[a]`` is -1; ``source_size`` is the resampled size in
    source axis order (the shape of the official, not reoriented, resampled array).
    """

    affine: np.ndarray
    size: Tuple[int, int, int]
    ras_axis: Tuple[int, int, int]
    sign: Tuple[int, int, int]
    source_size: Tuple[int, int, int]


def official_grid(image, spacing: float = ROI_SPACING) -> OfficialGrid:
    """The grid of torchio ``Resample(spacing)`` + ``ToCanonical`` applied to ``image`` (sitk image or geometry)."""
    geo = image if isinstance(image, SourceGeometry) else SourceGeometry.of(image)
    size = np.asarray(geo.size, dtype=float)
    old_spacing = np.asarray(geo.spacing, dtype=float)
    new_size = np.floor(size * old_spacing / spacing)  # as torchio: never extends the field of view
    new_size[size == 1] = 1
    new_size = np.maximum(new_size, 1).astype(int)
    affine_ras = geo.affine
    centre = (geometry.apply_affine(affine_ras, np.zeros(3)) + geometry.apply_affine(affine_ras, size - 1)) / 2
    direction = geometry.LPS_TO_RAS @ np.asarray(geo.direction, dtype=float).reshape(3, 3)
    ras_axis, sign = geometry.closest_canonical_axes(direction)
    canonical = geometry.canonical_direction_ras(direction)
    canonical_size = np.zeros(3, dtype=int)
    canonical_size[ras_axis] = new_size
    origin = centre - canonical @ ((canonical_size - 1) / 2.0 * spacing)
    return OfficialGrid(geometry.make_affine(origin, [spacing] * 3, canonical), tuple(int(n) for n in canonical_size),
                        tuple(int(a) for a in ras_axis), tuple(int(s) for s in sign),
                        tuple(int(n) for n in new_size))


@dataclass
class Roi:
    """A model-ready region of interest and everything needed to map results back.

    ``image``: torch float32 (1, 1, S, S, S), z-normalised, axes toward R, A, S (see :mod:`sammed3d.geometry`).
    ``affine``: 4x4 numpy, ROI index (a0, a1, a2) -> RAS mm. ``raw``: (S, S, S) float32 intensities before
    normalisation. ``start``: index on the official grid of ROI index (0, 0, 0). ``mean``/``std``: the
    normalisation applied (``image = (raw - mean) / std``).
    """

    image: torch.Tensor
    affine: np.ndarray
    raw: np.ndarray
    start: np.ndarray
    grid: OfficialGrid
    source: SourceGeometry
    center_ras: np.ndarray
    mean: float
    std: float

    @property
    def size(self) -> int:
        return int(self.raw.shape[0])

    @property
    def spacing(self) -> float:
        return float(np.linalg.norm(self.affine[:3, 0]))

    @property
    def valid_box(self) -> Tuple[np.ndarray, np.ndarray]:
        """(lo, hi): ROI indices lo <= a < hi lie on the official resampled image; the rest is padding."""
        lo = np.clip(-self.start, 0, self.size)
        hi = np.clip(np.asarray(self.grid.size) - self.start, 0, self.size)
        return lo, hi

    @property
    def valid(self) -> np.ndarray:
        """(S, S, S) bool: True on voxels of the image, False on padding."""
        lo, hi = self.valid_box
        mask = np.zeros(self.raw.shape, dtype=bool)
        mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
        return mask

    def ras_to_index(self, points_ras) -> np.ndarray:
        """RAS mm points (N, 3) or (3,) -> float ROI voxel coordinates (model point coordinates)."""
        return geometry.apply_affine(np.linalg.inv(self.affine), points_ras)

    def index_to_ras(self, indices) -> np.ndarray:
        """Float ROI voxel coordinates (N, 3) or (3,) -> RAS mm."""
        return geometry.apply_affine(self.affine, indices)

    def contains(self, points_ras) -> np.ndarray:
        """True for points inside the ROI cube (within its outer voxel faces)."""
        return geometry.inside_index_bounds(self.ras_to_index(points_ras), [self.size] * 3)

    def to_sitk(self, array) -> sitk.Image:
        """Wrap an (S, S, S) array indexed like the ROI as a SimpleITK image with the ROI's geometry."""
        return _roi_sitk_image(np.ascontiguousarray(array), self.affine)


def _roi_reference_geometry(affine_ras: np.ndarray):
    """Origin, spacing and direction (LPS) of a SimpleITK grid whose array [a0, a1, a2] is the ROI [a0, a1, a2].

    GetArrayFromImage reverses axes, so sitk index (i, j, k) is ROI axis (2, 1, 0): no transposed copies needed.
    """
    affine_lps = geometry.ras_affine_to_lps(affine_ras)
    columns = affine_lps[:3, :3][:, ::-1]
    spacing = np.linalg.norm(columns, axis=0)
    return tuple(affine_lps[:3, 3]), tuple(spacing), tuple((columns / spacing).ravel())


def _roi_sitk_image(array: np.ndarray, affine_ras: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    origin, spacing, direction = _roi_reference_geometry(affine_ras)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def _sample(image: sitk.Image, affine_ras: np.ndarray, size: int) -> np.ndarray:
    """Linear interpolation of ``image`` at the ROI voxel centres; 0 outside the image. (S, S, S) float32."""
    reference = sitk.Image([size] * 3, sitk.sitkUInt8)
    origin, spacing, direction = _roi_reference_geometry(affine_ras)
    reference.SetOrigin(origin)
    reference.SetSpacing(spacing)
    reference.SetDirection(direction)
    resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampled)


def _finite_copy_around(image: sitk.Image, affine_ras: np.ndarray, size: int) -> sitk.Image:
    """The part of a float image under the ROI (plus a one-voxel margin) with non-finite voxels set to 0."""
    corners = np.array([[a, b, c] for a in (-1, size) for b in (-1, size) for c in (-1, size)], dtype=float)
    indices = geometry.ras_to_index(image, geometry.apply_affine(affine_ras, corners))
    lo = np.clip(np.floor(indices.min(axis=0)) - 1, 0, np.asarray(image.GetSize()) - 1).astype(int)
    hi = np.clip(np.ceil(indices.max(axis=0)) + 2, lo + 1, np.asarray(image.GetSize())).astype(int)
    part = sitk.RegionOfInterest(image, [int(n) for n in hi - lo], [int(n) for n in lo])
    array = np.nan_to_num(sitk.GetArrayFromImage(part), nan=0.0, posinf=0.0, neginf=0.0)
    clean = sitk.GetImageFromArray(array)
    clean.CopyInformation(part)
    return clean


def z_normalize(raw: np.ndarray) -> Tuple[np.ndarray, float, float]:
    """(raw - mean) / std with mean and unbiased std of the voxels > 0; safe fallbacks, never NaN."""
    values = raw[raw > 0]
    if values.size < 2 or not np.std(values) > 0:
        values = raw.ravel()
    mean = float(np.mean(values, dtype=np.float64))
    std = float(np.std(values, dtype=np.float64, ddof=1)) if values.size > 1 else 0.0
    if not (np.isfinite(std) and std > 0):
        std = 1.0
        if not np.isfinite(mean):
            mean = 0.0
    normalized = (raw - np.float32(mean)) / np.float32(std)
    return normalized.astype(np.float32, copy=False), mean, std


def extract_roi(image: sitk.Image, center_ras, size: int = ROI_SIZE, spacing: float = ROI_SPACING) -> Roi:
    """The model input around ``center_ras`` (RAS mm, Slicer world coordinates), as the official preprocessing.

    ``image`` is a single-component 3D SimpleITK image of any orientation, spacing and pixel type. Raises
    InputImageError for unsuitable images and PromptError when the centre is not finite or outside the image.
    """
    validate_image(image)
    center = np.asarray(center_ras, dtype=np.float64).reshape(-1)
    if center.shape != (3,) or not np.all(np.isfinite(center)):
        raise PromptError("the ROI centre must be three finite RAS coordinates, got %r" % (center_ras,))
    source_index = geometry.ras_to_index(image, center)
    if not geometry.inside_index_bounds(source_index, image.GetSize()):
        raise PromptError("point R=%.1f A=%.1f S=%.1f mm is outside the image" % tuple(center))
    grid = official_grid(image, spacing)
    grid_index = geometry.apply_affine(np.linalg.inv(grid.affine), center)
    nearest = np.clip(np.floor(grid_index + 0.5), 0, np.asarray(grid.size) - 1).astype(int)
    start = nearest - size // 2  # torchio CropOrPad around a one-voxel mask at `nearest`, even or odd size
    affine = grid.affine.copy()
    affine[:3, 3] = geometry.apply_affine(grid.affine, start.astype(float))

    raw = _sample(image, affine, size)
    if not np.all(np.isfinite(raw)):
        raw = _sample(_finite_copy_around(image, affine, size), affine, size)
    roi = Roi(image=None, affine=affine, raw=raw, start=start, grid=grid, source=SourceGeometry.of(image),
              center_ras=center, mean=0.0, std=1.0)
    lo, hi = roi.valid_box
    if np.any(lo > 0) or np.any(hi < size):  # official padding: 0 beyond the resampled image
        inside = raw[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].copy()
        raw[...] = 0
        raw[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = inside
    normalized, roi.mean, roi.std = z_normalize(raw)
    roi.image = torch.from_numpy(normalized)[None, None]
    return roi
