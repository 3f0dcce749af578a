"""InteractiveSegmentationLogic on real MRML (slicer-core) with a real (tiny, random) SAM-Med3D.

Scene: the shared DICOM CT as a volume node under a rotated and shifted parent transform, a segmentation under
another transform that already holds a segment, clicks placed in world coordinates. The logic must agree with the
plain-Python path (and with `sammed3d segment`) for the same click, leave the other segment bit-identical, reuse
the embedding for a refinement click, keep per-segment sessions, and undo / redo / reset. (Refinement speed on
this scene is measured by `python scripts/benchmark.py slicer`, not asserted here.)
"""
import numpy as np
import pytest
import SimpleITK as sitk

import torch  # noqa: E402

import sammed3d.session as session_module  # noqa: E402

from sammed3d.model import build_sam_med3d  # noqa: E402
from sammed3d.model.config import SamMed3DConfig  # noqa: E402
from SAMMed3DSlicerLib import InteractiveSegmentationLogic  # noqa: E402
from SAMMed3DSlicerLib.prompt_nodes import prompt_nodes  # noqa: E402
from SAMMed3DSlicerLib.segment_io import read_segment_in_volume_grid  # noqa: E402
from slicer_scene import (  # noqa: E402
    build_scene,
    dice,
    internal_voxels,
    place,
    linear_transform_node,
    new_scene,
    read_dicom_series,
    volume_node_from_sitk,
)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny SAM-Med3D with random weights, saved in the official checkpoint layout."""
    torch.manual_seed(0)
    model = build_sam_med3d(SamMed3DConfig.named("tiny"))
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.dtype.is_floating_point:
                tensor.normal_(0.0, 0.05)
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save({"model_state_dict": model.state_dict()}, path)
    return str(path)


@pytest.fixture(scope="module")
def ct_image(shared_data):
    return read_dicom_series(shared_data / "ct_abdomen_dicom" / "dicom")


# Random weights make masks that fill the whole ROI and would grow into every neighbour ROI: the tests use the
# official single ROI to stay small and fast (the multi-ROI path is the session's own business and tested there).
SESSION = {"max_rois": 1}


def reference_mask(checkpoint, image, clicks):
    """The plain-Python path: a session on the SimpleITK image itself, clicks in its physical RAS."""
    import sammed3d

    session = session_module.InteractiveSession(sammed3d.load_model(checkpoint, "cpu"), image, **SESSION)
    return sitk.GetArrayFromImage(session.set_clicks(clicks))


def cli_mask(checkpoint, dicom_folder, ras, tmp_path):
    """`sammed3d segment` on the DICOM folder for one positive click (RAS mm of the image's own frame)."""
    from sammed3d.cli import main

    output = tmp_path / "cli_mask.nii.gz"
    code = main(["segment", str(dicom_folder), "-o", str(output), "--point"] + ["%.6f" % v for v in ras]
                + ["--checkpoint", checkpoint, "--device", "cpu", "--max-rois", str(SESSION["max_rois"])])
    assert code == 0
    return sitk.GetArrayFromImage(sitk.ReadImage(str(output)))


def test_logic_agrees_with_the_cli_and_keeps_other_segments(tiny_checkpoint, ct_image, shared_data, tmp_path):
    scene, volume, segmentation, other, target = build_scene(ct_image)
    other_before = internal_voxels(segmentation, other)
    positive, negative = prompt_nodes(segmentation, target)
    click = place(positive, volume, (10, 250, 260))
    logic = InteractiveSegmentationLogic(checkpoint=tiny_checkpoint, device="cpu", **SESSION)
    update = logic.segment(volume, segmentation, target, positive, negative)
    assert update.clicks == 1
    ours = sitk.GetArrayFromImage(read_segment_in_volume_grid(segmentation, target, volume))
    expected = cli_mask(tiny_checkpoint, shared_data / "ct_abdomen_dicom" / "dicom", click, tmp_path)
    assert expected.any(), "the reference mask is empty: the test would prove nothing"
    assert dice(ours, expected) >= 0.98
    other_after = internal_voxels(segmentation, other)
    assert other_after[0] == other_before[0] and np.array_equal(other_after[1], other_before[1])

    # Refinement clicks reuse the embedding: no encoder run.
    second = place(negative, volume, (10, 270, 300))
    update = logic.segment(volume, segmentation, target, positive, negative)
    assert update.clicks == 2 and update.timings["encoder"] == 0.0
    refined = sitk.GetArrayFromImage(read_segment_in_volume_grid(segmentation, target, volume))
    assert dice(refined, reference_mask(tiny_checkpoint, ct_image, [(click, True), (second, False)])) >= 0.98
    for kji in ((9, 240, 250), (11, 262, 270)):
        place(positive, volume, kji)
        update = logic.segment(volume, segmentation, target, positive, negative)
        assert update.timings["encoder"] == 0.0


def test_sessions_are_per_segment_and_undo_redo_reset_work(tiny_checkpoint, ct_image):
    scene, volume, segmentation, other, target = build_scene(ct_image)
    logic = InteractiveSegmentationLogic(checkpoint=tiny_checkpoint, device="cpu", **SESSION)
    positive, negative = prompt_nodes(segmentation, target)
    place(positive, volume, (10, 250, 260))
    logic.segment(volume, segmentation, target, positive, negative)
    one_click = sitk.GetArrayFromImage(read_segment_in_volume_grid(segmentation, target, volume))
    place(negative, volume, (10, 270, 300))
    logic.segment(volume, segmentation, target, positive, negative)
    two_clicks = sitk.GetArrayFromImage(read_segment_in_volume_grid(segmentation, target, volume))

    # Another segment has its own points and session; the first one's are untouched.
    second = segmentation.GetSegmentation().AddEmptySegment("second")
    positive2, negative2 = prompt_nodes(segmentation, second)
    place(positive2, volume, (8, 200, 200))
    logic.segment(volume, segmentation, second, positive2, negative2)
    assert logic.has_session(volume, segmentation, target) and logic.has_session(volume, segmentation, second)
    assert positive.GetNumberOfControlPoints() == 1 and negative.GetNumberOfControlPoints() == 1

    logic.undo(volume, segmentation, target, positive, negative)
    assert negative.GetNumberOfControlPoints() == 0
    assert np.array_equal(sitk.GetArrayFromImage(read_segment_in_volume_grid(segmentation, target, volume)), one_click)
    logic.redo(volume, segmentation, target, positive, negative)
    assert negative.GetNumberOfControlPoints() == 1
    assert np.array_equal(sitk.GetArrayFromImage(read_segment_in_volume_grid(segmentation, target, volume)), two_clicks)

    logic.reset(volume, segmentation, target, positive, negative)
    assert positive.GetNumberOfControlPoints() == 0 and negative.GetNumberOfControlPoints() == 0
    assert read_segment_in_volume_grid(segmentation, target, volume) is None  # it was empty before the first click
    assert read_segment_in_volume_grid(segmentation, second, volume) is not None


def test_existing_segment_content_seeds_the_session_and_reset_restores_it(tiny_checkpoint, ct_image):
    scene, volume, segmentation, other, target = build_scene(ct_image)
    logic = InteractiveSegmentationLogic(checkpoint=tiny_checkpoint, device="cpu", **SESSION)
    original = read_segment_in_volume_grid(segmentation, other, volume)
    positive, negative = prompt_nodes(segmentation, other)
    place(positive, volume, (10, 250, 260))
    logic.segment(volume, segmentation, other, positive, negative)
    assert logic._states[(volume.GetID(), segmentation.GetID(), other)].seed is not None  # noqa: SLF001
    logic.reset(volume, segmentation, other, positive, negative)
    restored = read_segment_in_volume_grid(segmentation, other, volume)
    assert np.array_equal(sitk.GetArrayFromImage(restored), sitk.GetArrayFromImage(original))


def test_logic_on_the_bundled_ct_without_shared_data(tiny_checkpoint, ct_3mm_path):
    image = sitk.ReadImage(str(ct_3mm_path))
    scene = new_scene()
    volume = volume_node_from_sitk(scene, image, "CT 3 mm")
    volume.SetAndObserveTransformNodeID(linear_transform_node(scene, (0, 30, -10), (-12, 5, 20)).GetID())
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.SetAndObserveTransformNodeID(linear_transform_node(scene, (15, 0, 0), (3, 3, 3)).GetID())
    target = segmentation.GetSegmentation().AddEmptySegment("target")
    positive, negative = prompt_nodes(segmentation, target)
    click = place(positive, volume, (15, 50, 60))
    logic = InteractiveSegmentationLogic(checkpoint=tiny_checkpoint, device="cpu", **SESSION)
    logic.segment(volume, segmentation, target, positive, negative)
    ours = sitk.GetArrayFromImage(read_segment_in_volume_grid(segmentation, target, volume))
    expected = reference_mask(tiny_checkpoint, image, [(click, True)])
    assert expected.any() and dice(ours, expected) >= 0.98
