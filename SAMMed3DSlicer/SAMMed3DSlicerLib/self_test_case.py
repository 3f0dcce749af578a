"""The self-test case shipped with the module: a small abdominal CT, its liver (reference) and one click in it.

The click is the liver's deepest voxel (largest distance to the boundary), computed from the reference.
Runs under slicer-core too, so the CI checks the case itself; the model's answer is checked inside Slicer.
"""
from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk

from .segment_io import read_segment_in_volume_grid

RESOURCES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Resources", "Testing")


class SelfTestCase(object):
    """image_path, reference_path, click_ras (volume RAS), checkpoint, min_dice, compare(...)."""

    # One click, SAM-Med3D-turbo, liver at 3 mm: a regression floor (empty or misplaced masks fail), not a score.
    min_dice = 0.6

    def __init__(self, checkpoint=None):
        self.image_path = os.path.join(RESOURCES, "ct_abdomen_3mm.nii.gz")
        self.reference_path = os.path.join(RESOURCES, "ct_abdomen_3mm_liver.nii.gz")
        self.checkpoint = checkpoint or os.environ.get("SAMMED3D_SELFTEST_CHECKPOINT") or "turbo"
        self.reference = sitk.ReadImage(self.reference_path)
        self.click_ras = self._deepest_point_ras(self.reference)

    @staticmethod
    def _deepest_point_ras(mask):
        distance = sitk.SignedMaurerDistanceMap(mask > 0, insideIsPositive=True, useImageSpacing=True)
        k, j, i = np.unravel_index(int(np.argmax(sitk.GetArrayViewFromImage(distance))), mask.GetSize()[::-1])
        x, y, z = mask.TransformIndexToPhysicalPoint((int(i), int(j), int(k)))
        return (-x, -y, z)  # LPS -> RAS

    def reference_in_grid_of(self, image):
        """The reference resampled (nearest neighbour) onto ``image``'s grid, as a numpy [k, j, i] array."""
        resampled = sitk.Resample(self.reference, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        return sitk.GetArrayFromImage(resampled) > 0

    def compare(self, segmentation_node, segment_id, volume_node):
        """Dice between the segment (read into the volume grid) and the reference."""
        mask = read_segment_in_volume_grid(segmentation_node, segment_id, volume_node)
        if mask is None:
            return 0.0
        segment = sitk.GetArrayFromImage(mask) > 0
        reference = self.reference_in_grid_of(mask)
        return float(2.0 * np.logical_and(segment, reference).sum() / (segment.sum() + reference.sum()))
