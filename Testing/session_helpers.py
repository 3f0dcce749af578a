"""Test helpers for sessions: organ click points on the bundled CT, a tiny random checkpoint, a threshold model."""
import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from sammed3d import geometry
from sammed3d.model import SamMed3DConfig, build_sam_med3d

ORGANS = {"liver": 5, "spleen": 1, "kidney_right": 2}


def organ_point(label_image: sitk.Image, value: int, image: sitk.Image = None) -> np.ndarray:
    """RAS mm of the organ voxel nearest to its centroid (inside the organ)."""
    array = sitk.GetArrayFromImage(label_image)
    kji = np.argwhere(array == value)
    nearest = kji[np.argmin(((kji - kji.mean(0)) ** 2).sum(1))]
    return geometry.index_to_ras(image or label_image, nearest[::-1].astype(float))


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_sam_med3d(SamMed3DConfig.named("tiny")).eval()


def dice(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


class ThresholdModel(nn.Module):
    """A transparent stand-in for the network with the same encode/decode interface, for testing the session's
    ROI tiling: at the 32^3 low-res resolution it segments the cells on the same side of the ROI's mid-intensity as
    the first positive point's cell, connected to a positive point. Deterministic and exact on a bright object."""

    def __init__(self):
        super().__init__()
        self.register_buffer("anchor", torch.zeros(1))
        self.encode_calls = 0

    @property
    def device(self):
        return self.anchor.device

    def encode(self, image):
        self.encode_calls += 1
        return torch.nn.functional.avg_pool3d(image, 4)

    def decode(self, embedding, coords, labels, mask_logits=None):
        low = embedding[0, 0].numpy()
        seeds = [tuple(np.clip((c / 4).astype(int), 0, 31)) for c, l in zip(coords[0].numpy(), labels[0].numpy())
                 if l == 1]
        out = np.zeros(low.shape, dtype=bool)
        if seeds:
            middle = (low.min() + low.max()) / 2
            side = (low > middle) == (low[seeds[0]] > middle)
            components = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(side.astype(np.uint8))))
            out = np.isin(components, [components[s] for s in seeds if side[s]])
        return torch.from_numpy(np.where(out, 10.0, -10.0).astype(np.float32))[None, None]
