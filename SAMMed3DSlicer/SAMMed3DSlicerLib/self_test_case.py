"""The self-test case shipped with the module: a small abdominal CT, its liver and one click in it.

The click is the liver's deepest voxel (largest distance to the boundary), computed from the liver label.
Weights: the bundled demo model (no download: the Extensions Index build machines have no network) unless
``SAMMED3D_SELFTEST_CHECKPOINT`` names others ("turbo" or a file).

Reference and floor fit the weights:

- SAM-Med3D-turbo: the liver label, Dice >= 0.6 (a regression floor: empty or misplaced masks fail);
- any other weights (the demo model, which is retrained from time to time, or a local file): the mask that
  ``sammed3d``'s own :class:`~sammed3d.session.InteractiveSession` computes for the same image, click and weights,
  Dice >= 0.98 -- the module's MRML path must equal the engine, whatever the weights' accuracy.

:meth:`SelfTestCase.run` is the self-test's core (one click through InteractiveSegmentationLogic, then compare); it
runs inside Slicer and, in the CI, on real MRML under slicer-core.
"""
from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk

from .segment_io import read_segment_in_volume_grid

RESOURCES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Resources", "Testing")


class SelfTestCase(object):
    """image_path, reference_path, click_ras (volume RAS), checkpoint, min_dice, compare(...)."""

    #: One click, SAM-Med3D-turbo, liver at 3 mm: a regression floor (empty or misplaced masks fail), not a score.
    TURBO_MIN_DICE = 0.6
    #: Other weights: the module's result against the engine's own for the same weights.
    ENGINE_MIN_DICE = 0.98

    def __init__(self, checkpoint=None):
        self.image_path = os.path.join(RESOURCES, "ct_abdomen_3mm.nii.gz")
        self.reference_path = os.path.join(RESOURCES, "ct_abdomen_3mm_liver.nii.gz")
        self.checkpoint = checkpoint or os.environ.get("SAMMED3D_SELFTEST_CHECKPOINT") or "demo"
        self.label = sitk.ReadImage(self.reference_path)
        self.reference = self.label
        self.click_ras = self._deepest_point_ras(self.label)
        turbo = self.checkpoint == "turbo"
        self.reference_kind = "liver label" if turbo else "engine's own mask for these weights"
        self.min_dice = self.TURBO_MIN_DICE if turbo else self.ENGINE_MIN_DICE

    def engine_mask(self, session_options=None, device="cpu"):
        """The mask sammed3d's own session computes for the image, the click and the weights (no MRML)."""
        import sammed3d
        from sammed3d.session import InteractiveSession

        image = sitk.ReadImage(self.image_path)
        session = InteractiveSession(sammed3d.load_model(self.checkpoint, device), image, **(session_options or {}))
        return session.set_clicks([(self.click_ras, True)])

    def run(self, volume_node, segmentation_node, logic):
        """The self-test's core: one positive click at :attr:`click_ras` through ``logic`` (an
        InteractiveSegmentationLogic on these weights) into a new "liver" segment, then the Dice with the reference
        (loaded or computed here). Returns (Dice, SegmentUpdate)."""
        from .prompt_nodes import prompt_nodes

        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        segment_id = segmentation_node.GetSegmentation().AddEmptySegment("liver")
        positive, negative = prompt_nodes(segmentation_node, segment_id)
        positive.AddControlPoint(*self.click_ras)
        update = logic.segment(volume_node, segmentation_node, segment_id, positive, negative)
        if self.checkpoint != "turbo":
            self.reference = self.engine_mask(logic.session_options, "cpu")
        return self.compare(segmentation_node, segment_id, volume_node), update

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
