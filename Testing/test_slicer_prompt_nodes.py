"""Per-segment point lists and the self-test case, on real MRML (slicer-core)."""
import numpy as np
import pytest
import SimpleITK as sitk


from SAMMed3DSlicerLib.prompt_nodes import NEGATIVE_COLOR, POSITIVE_COLOR, prompt_nodes, show_only_segment_prompts  # noqa: E402,E501
from SAMMed3DSlicerLib.segment_io import write_mask_to_segment  # noqa: E402
from SAMMed3DSlicerLib.self_test_case import SelfTestCase  # noqa: E402
from slicer_scene import linear_transform_node, new_scene, volume_node_from_sitk  # noqa: E402


def test_each_segment_has_its_own_green_and_red_point_lists():
    scene = new_scene()
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    a = segmentation.GetSegmentation().AddEmptySegment("id_a", "liver")
    b = segmentation.GetSegmentation().AddEmptySegment("id_b", "spleen")
    assert prompt_nodes(segmentation, a, create=False) == (None, None)
    positive_a, negative_a = prompt_nodes(segmentation, a)
    positive_b, negative_b = prompt_nodes(segmentation, b)
    assert len({positive_a.GetID(), negative_a.GetID(), positive_b.GetID(), negative_b.GetID()}) == 4
    assert prompt_nodes(segmentation, a) == (positive_a, negative_a)  # found again, not re-created
    np.testing.assert_allclose(positive_a.GetDisplayNode().GetSelectedColor(), POSITIVE_COLOR)
    np.testing.assert_allclose(negative_a.GetDisplayNode().GetSelectedColor(), NEGATIVE_COLOR)
    assert positive_a.GetName().startswith("liver")
    positive_a.AddControlPoint(1, 2, 3)
    show_only_segment_prompts(segmentation, b)
    assert not positive_a.GetDisplayVisibility() and positive_b.GetDisplayVisibility()
    assert positive_a.GetNumberOfControlPoints() == 1  # switching segments keeps each one's points


def test_self_test_case_click_is_inside_the_reference_and_compare_scores_it():
    case = SelfTestCase(checkpoint="unused.pth")
    scene = new_scene()
    image = sitk.ReadImage(case.image_path)
    volume = volume_node_from_sitk(scene, image)
    index = image.TransformPhysicalPointToIndex((-case.click_ras[0], -case.click_ras[1], case.click_ras[2]))
    assert sitk.GetArrayViewFromImage(case.reference)[index[::-1]] == 1
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.SetAndObserveTransformNodeID(linear_transform_node(scene, (0, 0, 15), (3, 0, 0)).GetID())
    segment_id = segmentation.GetSegmentation().AddEmptySegment("liver")
    assert case.compare(segmentation, segment_id, volume) == 0.0
    write_mask_to_segment(case.reference, volume, segmentation, segment_id)
    assert case.compare(segmentation, segment_id, volume) == pytest.approx(1.0)
    half = sitk.GetArrayFromImage(case.reference)
    half[: half.shape[0] // 2] = 0
    half_image = sitk.GetImageFromArray(half)
    half_image.CopyInformation(case.reference)
    write_mask_to_segment(half_image, volume, segmentation, segment_id)
    assert 0.1 < case.compare(segmentation, segment_id, volume) < 0.95
