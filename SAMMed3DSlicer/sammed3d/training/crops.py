"""Training samples: a 128^3, 1.5 mm RAS crop of image and binary label around one object, randomly flipped.

The image crop is exactly the inference input (:func:`sammed3d.roi.extract_roi`: official grid, 0 padding,
z-normalisation over voxels > 0); the label is resampled (nearest neighbour) onto the same ROI grid, so image and
label voxels coincide. Read images and labels are cached in memory (training sets here are small).
"""
from __future__ import annotations

from collections import namedtuple
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import SamMed3DError
from ..evaluation.datasets import Case, load_label_in_image_grid, read_image
from ..roi import ROI_SIZE, ROI_SPACING, extract_roi, z_normalize
from .. import geometry
from .augment import remap_contrast

Target = namedtuple("Target", ["case_id", "label", "name"])
Target.__doc__ = "One object to train on: a label value of one case."


class _LoadedCase(object):
    """A case's image (float32) and label map in the image grid, with the voxel indices of each label."""

    def __init__(self, case: Case):
        self.case = case
        self.image = sitk.Cast(read_image(case.image_path), sitk.sitkFloat32)
        self.label = load_label_in_image_grid(case.label_path, self.image)
        array = sitk.GetArrayViewFromImage(self.label)
        self.voxels: Dict[int, np.ndarray] = {}
        for value in case.labels:
            indices = np.argwhere(array == value)  # (N, 3) numpy order (k, j, i)
            if len(indices):
                self.voxels[int(value)] = indices


class CropSampler(object):
    """Draws random training crops from labelled cases (nnU-Net / SAM-Med3D layouts, see ``evaluation.datasets``).

    ``targets`` lists every (case, label) pair present in the data; :meth:`sample` draws one crop of a target.
    ``center_jitter`` (mm): the crop centre is the object's bounding-box centre (as the official code) moved by up
    to this much per axis; with probability ``voxel_center_prob`` it is instead a random voxel of the object (as
    an interactive first click would be). ``flip``: flip image and label on each axis with probability 0.5.
    ``min_voxels``: ignore objects smaller than this (in their own image's voxels).
    ``contrast_prob``: probability that a crop's intensities are randomly re-contrasted before normalisation
    (:func:`.augment.remap_contrast`; 0, the default, keeps the official pipeline).
    """

    def __init__(
        self,
        cases: Sequence[Case],
        size: int = ROI_SIZE,
        spacing: float = ROI_SPACING,
        center_jitter: float = 15.0,
        voxel_center_prob: float = 0.5,
        flip: bool = True,
        min_voxels: int = 10,
        include_labels: Optional[Sequence[str]] = None,
        exclude_labels: Optional[Sequence[str]] = None,
        contrast_prob: float = 0.0,
    ):
        self.size, self.spacing = int(size), float(spacing)
        self.center_jitter, self.voxel_center_prob, self.flip = float(center_jitter), float(voxel_center_prob), flip
        self.min_voxels = int(min_voxels)
        self.contrast_prob = float(contrast_prob)
        self._cases: Dict[str, _LoadedCase] = {}
        self._allowed: Dict[str, List[int]] = {}
        self.targets: List[Target] = []
        for case in cases:
            loaded = _LoadedCase(case)
            self._cases[case.case_id] = loaded
            for value, indices in sorted(loaded.voxels.items()):
                name = case.labels[value]
                if len(indices) < min_voxels or not _selected(name, value, include_labels, exclude_labels):
                    continue
                self.targets.append(Target(case.case_id, value, name))
                self._allowed.setdefault(case.case_id, []).append(value)
        if not self.targets:
            raise SamMed3DError("no labelled object to train on (every label is absent, too small or excluded)")

    def case_ids(self) -> List[str]:
        return sorted(self._cases)

    def crop_center(self, target: Target, rng: np.random.Generator) -> np.ndarray:
        """RAS centre (mm) of a crop around ``target``."""
        loaded = self._cases[target.case_id]
        indices = loaded.voxels[target.label]
        if rng.random() < self.voxel_center_prob:
            kji = indices[rng.integers(len(indices))].astype(float)
        else:
            kji = (indices.min(axis=0) + indices.max(axis=0)) / 2.0
        center = geometry.index_to_ras(loaded.image, kji[::-1].copy())
        return center + rng.uniform(-self.center_jitter, self.center_jitter, size=3)

    def crop(self, target: Target, center_ras, others: int = 0, rng: Optional[np.random.Generator] = None
             ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(image 1 x S^3 float32 normalised, labels K x S^3 float32 0/1) on the ROI grid around ``center_ras``.

        labels[0] is ``target``; with ``others`` > 0, up to that many other objects of the case that have at least
        ``min_voxels`` voxels in the crop follow (drawn with ``rng``).
        """
        loaded = self._cases[target.case_id]
        center = _clamp_into_image(loaded.image, np.asarray(center_ras, dtype=float))
        roi = extract_roi(loaded.image, center, size=self.size, spacing=self.spacing)
        reference = roi.to_sitk(np.zeros((self.size,) * 3, dtype=np.uint8))
        resampled = sitk.Resample(loaded.label, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                  loaded.label.GetPixelID())
        label_map = sitk.GetArrayFromImage(resampled)
        label_map[~roi.valid] = 0  # nothing in the padding, as the image
        values = [target.label]
        if others > 0 and rng is not None:
            present, counts = np.unique(label_map, return_counts=True)
            wanted = set(self._allowed[target.case_id])
            candidates = [int(v) for v, n in zip(present, counts)
                          if int(v) in wanted and int(v) != target.label and n >= self.min_voxels]
            if candidates:
                picked = rng.choice(candidates, size=min(others, len(candidates)), replace=False)
                values += [int(v) for v in picked]
        masks = np.stack([label_map == value for value in values]).astype(np.float32)
        if rng is not None and self.contrast_prob > 0 and rng.random() < self.contrast_prob:
            raw = remap_contrast(roi.raw.copy(), roi.valid, label_map, rng)
            return torch.from_numpy(z_normalize(raw)[0])[None], torch.from_numpy(masks)
        return roi.image[0].clone(), torch.from_numpy(masks)

    def sample(self, rng: np.random.Generator, target: Optional[Target] = None, others: int = 0
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        """A random crop (image 1 x S^3, labels K x S^3) of ``target`` (default: drawn uniformly), randomly flipped.

        ``others``: up to this many more objects of the same crop (one encoder pass serves them all).
        """
        for _ in range(10):
            chosen = target if target is not None else self.targets[rng.integers(len(self.targets))]
            image, labels = self.crop(chosen, self.crop_center(chosen, rng), others, rng)
            if labels[0].any():
                break
        else:  # a thin object missed by the 1.5 mm grid every time: fall back to its bounding-box centre
            image, labels = self.crop(chosen, self.crop_center(chosen, _CENTRE_RNG))
        if self.flip:
            axes = [axis + 1 for axis in range(3) if rng.random() < 0.5]
            if axes:
                image, labels = torch.flip(image, axes), torch.flip(labels, axes)
        return image.contiguous(), labels.contiguous()

    def batch(self, rng: np.random.Generator, batch_size: int, others: int = 0
              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """B x 1 x S^3 images, N x 1 x S^3 object labels and N owners (the image index of each object)."""
        pairs = [self.sample(rng, others=others) for _ in range(batch_size)]
        images = torch.stack([p[0] for p in pairs])
        labels = torch.cat([p[1] for p in pairs])[:, None]
        owners = torch.cat([torch.full((len(p[1]),), n, dtype=torch.long) for n, p in enumerate(pairs)])
        return images, labels, owners


class _BoxCentreRng(object):
    """A stand-in generator that always chooses the bounding-box centre with no jitter."""

    def random(self):
        return 1.0

    def uniform(self, low, high, size=None):
        return np.zeros(size)


_CENTRE_RNG = _BoxCentreRng()


def _clamp_into_image(image: sitk.Image, center_ras: np.ndarray) -> np.ndarray:
    """Move a (jittered) centre back inside the image if it fell outside."""
    index = geometry.ras_to_index(image, center_ras)
    clamped = np.clip(index, 0, np.asarray(image.GetSize()) - 1)
    return center_ras if np.allclose(index, clamped) else geometry.index_to_ras(image, clamped)


def _selected(name: str, value: int, include, exclude) -> bool:
    keys = {str(name).lower(), str(value)}
    if include and not keys & {str(x).lower() for x in include}:
        return False
    if exclude and keys & {str(x).lower() for x in exclude}:
        return False
    return True
