"""MedSAM's official slice pipeline (SPEC section 8; MedSAM `pre_CT_MR.py` and `MedSAM_Inference.py`).

Volume: CT is clipped to a window (level 40 / width 400 by default), MR to the 0.5-99.5 percentiles of its non-zero
voxels (zeros stay 0); "auto" takes CT when a voxel lies below -200 (air, lung or fat in HU; MR intensities are not
that negative), else MR; then min-max over the volume to 0..255 and cast to uint8. Slice: the stored array's k-plane
(x = column i, y = row j) repeated to 3 channels, resized to 1024^2 by scikit-image (cubic, anti-aliased, range
kept), cast to uint8, min-max to [0, 1]. Box [x0, y0, x1, y1] in slice pixels, scaled by 1024 / W, 1024 / H. Mask:
sigmoid of the 256^2 logits, bilinear (align_corners=False) to H x W, > 0.5.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..errors import SamMed3DError

MODALITIES = ("CT", "MR")
AUTO = "auto"
#: "auto" takes CT when the volume has a voxel below this (HU): air, lung and fat are below it, MR intensities are not.
CT_BELOW = -200.0
DEFAULT_WINDOW = (40.0, 400.0)  # level, width (HU)
INPUT_SIZE = 1024


def resolve_modality(array_kji: np.ndarray, modality: str) -> str:
    """ "CT" or "MR": `modality` itself, or for "auto" the guess described in the module docstring."""
    if str(modality).lower() == AUTO:
        data = np.asarray(array_kji)
        return "CT" if data.size and float(np.min(data)) < CT_BELOW else "MR"
    modality = str(modality).upper()
    if modality not in MODALITIES:
        raise SamMed3DError("unknown modality %r (choose CT, MR or auto)" % modality)
    return modality


def normalize_volume(array_kji: np.ndarray, modality: str = "CT", window=DEFAULT_WINDOW) -> np.ndarray:
    """The whole volume as MedSAM's uint8 0..255 intensities ([k, j, i] in, same shape out)."""
    data = np.asarray(array_kji)
    modality = resolve_modality(data, modality)
    if modality == "CT":
        level, width = (float(v) for v in window)
        if not width > 0:
            raise SamMed3DError("the CT window width must be positive, got %g" % width)
        clipped = np.clip(data, level - width / 2, level + width / 2)
    else:
        nonzero = data[data > 0]
        if nonzero.size == 0:
            raise SamMed3DError("the MR image has no positive voxels to take percentiles of")
        clipped = np.clip(data, np.percentile(nonzero, 0.5), np.percentile(nonzero, 99.5))
    low, high = np.min(clipped), np.max(clipped)
    scaled = (clipped - low) / (high - low) * 255.0 if high > low else np.zeros(clipped.shape)
    if modality == "MR":
        scaled[data == 0] = 0
    return np.uint8(scaled)


def resize_slice(slice_uint8: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """`skimage.transform.resize(..., order=3, preserve_range=True, anti_aliasing=True).astype(np.uint8)` of one
    H x W slice -> size x size uint8. The official code resizes the 3-channel copy; its channels are equal and
    resized independently, so one channel gives the same values ~20x faster (checked in the tests)."""
    try:
        from skimage import transform
    except ImportError:  # pragma: no cover - depends on the installation
        raise SamMed3DError("MedSAM needs scikit-image: pip install scikit-image (or sammed3d[medsam])") from None
    return transform.resize(slice_uint8, (size, size), order=3, preserve_range=True,
                            anti_aliasing=True).astype(np.uint8)


def slice_to_input(slice_uint8: np.ndarray, size: int = INPUT_SIZE):
    """One H x W uint8 slice -> the encoder input, a 1 x 3 x size x size float tensor in [0, 1]."""
    import torch

    resized = resize_slice(slice_uint8, size).astype(np.float64)
    span = max(resized.max() - resized.min(), 1e-8)
    scaled = torch.from_numpy((resized - resized.min()) / span).float()
    return scaled[None, None].expand(1, 3, size, size).contiguous()


def box_to_input(box_xyxy: Sequence[float], height: int, width: int, size: int = INPUT_SIZE) -> np.ndarray:
    """[x0, y0, x1, y1] slice pixels -> the same box in input pixels (float64, shape (4,))."""
    return np.asarray(box_xyxy, dtype=np.float64) / np.array([width, height, width, height]) * size


def logits_to_mask(low_res_logits, height: int, width: int) -> np.ndarray:
    """B x 1 x 256 x 256 logits -> B x H x W uint8 masks (sigmoid, bilinear, > 0.5), as MedSAM_Inference.py."""
    import torch
    import torch.nn.functional as F

    probability = F.interpolate(torch.sigmoid(low_res_logits.float()), size=(height, width), mode="bilinear",
                                align_corners=False)
    return (probability[:, 0].cpu().numpy() > 0.5).astype(np.uint8)


def mask_box(mask: np.ndarray, margin: float = 5) -> Optional[np.ndarray]:
    """The bounding box [x0, y0, x1, y1] of a H x W mask enlarged by `margin` pixels and clipped to the slice (as
    MedSAM's 3D example `get_bbox`); None for an empty mask."""
    rows, columns = np.nonzero(mask)
    if rows.size == 0:
        return None
    height, width = mask.shape
    return np.array([max(0, columns.min() - margin), max(0, rows.min() - margin),
                     min(width - 1, columns.max() + margin), min(height - 1, rows.max() + margin)], dtype=np.float64)
