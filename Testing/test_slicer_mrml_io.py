"""MRML plumbing on real Slicer nodes (slicer-core): volume <-> SimpleITK, markups -> clicks, mask <-> segment,
under rotated and shifted parent transforms."""
import numpy as np
import pytest
import SimpleITK as sitk
import vtk

import slicer  # the slicer-core wheel (a test dependency)

from SAMMed3DSlicerLib import markups, segment_io, volume_conversion  # noqa: E402
from sammed3d.errors import InputImageError  # noqa: E402
from slicer_scene import (  # noqa: E402
    dice,
    linear_transform_node,
    new_scene,
    read_dicom_series,
    segment_voxels_in_volume_indices,
    to_world,
    voxel_centres_local,
    volume_node_from_sitk,
)


def oblique_image(shape_kji=(10, 20, 30), dtype=np.int16):
    voxels = np.arange(np.prod(shape_kji)).reshape(shape_kji).astype(dtype)
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing((1.5, 0.8, 2.5))
    image.SetOrigin((10.0, -20.0, 30.0))
    rotation = sitk.Euler3DTransform()
    rotation.SetRotation(0.1, 0.2, -0.3)
    image.SetDirection(rotation.GetMatrix())
    return image


@pytest.fixture()
def scene():
    return new_scene()


def test_volume_to_sitk_keeps_voxels_and_physical_geometry(scene):
    image = oblique_image()
    node = volume_node_from_sitk(scene, image)
    back = volume_conversion.volume_to_sitk(node)
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    assert back.GetPixelID() == image.GetPixelID()
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-9)
    # Independent of the conversion code: Slicer's own IJK->RAS of a voxel equals ITK's LPS point, x and y negated.
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ras = matrix.MultiplyPoint((7, 3, 5, 1))[:3]
    lps = image.TransformIndexToPhysicalPoint((7, 3, 5))
    np.testing.assert_allclose(ras, (-lps[0], -lps[1], lps[2]), atol=1e-9)


def test_volume_to_sitk_honours_a_non_zero_extent_start(scene):
    image = oblique_image((4, 5, 6))
    node = volume_node_from_sitk(scene, image)
    node.GetImageData().SetExtent(2, 7, 1, 5, 3, 6)  # same voxels, IJK now starts at (2, 1, 3)
    back = volume_conversion.volume_to_sitk(node)
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ras = matrix.MultiplyPoint((2, 1, 3, 1))[:3]
    lps = back.TransformIndexToPhysicalPoint((0, 0, 0))
    np.testing.assert_allclose(ras, (-lps[0], -lps[1], lps[2]), atol=1e-9)


def test_volume_to_sitk_rejects_nodes_without_a_scalar_image(scene):
    with pytest.raises(InputImageError):
        volume_conversion.volume_to_sitk(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode"))
    with pytest.raises(InputImageError):
        volume_conversion.volume_to_sitk(scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode"))


def test_clicks_are_mapped_from_world_to_the_volume_local_frame(scene):
    volume = volume_node_from_sitk(scene, oblique_image())
    outer = linear_transform_node(scene, (0, 0, 30), (0, 4, 0))
    volume.SetAndObserveTransformNodeID(linear_transform_node(scene, (20, -10, 5), (12, -7, 30), outer).GetID())
    positive = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    negative = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    # The markups nodes are under their own transform: their world positions are what counts.
    positive.SetAndObserveTransformNodeID(linear_transform_node(scene, (0, 45, 0), (1, 2, 3)).GetID())
    local = voxel_centres_local(volume, [[4, 10, 12], [6, 2, 20]])
    world = to_world(volume, local)
    positive.AddControlPointWorld(vtk.vtkVector3d(*world[0]))
    negative.AddControlPointWorld(vtk.vtkVector3d(*world[1]))
    clicks = markups.current_clicks(volume, positive, negative)
    assert [c.positive for c in clicks] == [True, False]
    np.testing.assert_allclose([c.ras for c in clicks], local, atol=1e-6)
    np.testing.assert_allclose([c.world for c in clicks], world, atol=1e-6)


def test_points_without_a_defined_position_are_not_clicks(scene):
    volume = volume_node_from_sitk(scene, oblique_image())
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    node.AddControlPoint(1, 2, 3)
    node.AddControlPoint(4, 5, 6)
    node.AddControlPoint(7, 8, 9)
    node.UnsetNthControlPointPosition(1)
    node.SetNthControlPointPositionMissing(2)
    node.SetNthControlPointSelected(0, False)  # unselected points still count
    clicks = markups.current_clicks(volume, node, None)
    assert [c.ras for c in clicks] == [(1.0, 2.0, 3.0)]


def test_non_linear_parent_transforms_are_followed(scene):
    volume = volume_node_from_sitk(scene, oblique_image())
    grid = vtk.vtkImageData()
    grid.SetOrigin(-200, -200, -200)
    grid.SetSpacing(100, 100, 100)
    grid.SetDimensions(5, 5, 5)
    grid.AllocateScalars(vtk.VTK_DOUBLE, 3)
    displacement = vtk.util.numpy_support.vtk_to_numpy(grid.GetPointData().GetScalars())
    displacement[:] = (3.0, -2.0, 5.0)  # a constant displacement field: easy to check, yet a grid transform
    grid_transform = slicer.vtkOrientedGridTransform()
    grid_transform.SetDisplacementGridData(grid)
    transform_node = scene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    transform_node.SetAndObserveTransformToParent(grid_transform)
    volume.SetAndObserveTransformNodeID(transform_node.GetID())
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    node.AddControlPoint(10, 20, 30)
    (click,) = markups.current_clicks(volume, node)
    np.testing.assert_allclose(click.ras, (7, 22, 25), atol=1e-3)


def test_click_order_is_chronological_across_nodes():
    def click(node, point, positive):
        return markups.Click((node, point), (0.0, 0.0, 0.0), positive, (0.0, 0.0, 0.0))

    first, second = click("pos", "1", True), click("neg", "1", False)
    # The user clicked a negative point after the positive one, then another positive point.
    previous = [first, second]
    current = [first, click("pos", "2", True), second]  # node order: positives first
    ordered = markups.chronological_clicks(previous, current)
    assert [c.key for c in ordered] == [("pos", "1"), ("neg", "1"), ("pos", "2")]
    # A removed click just disappears; the others keep their order.
    assert [c.key for c in markups.chronological_clicks(ordered, [first, click("pos", "2", True)])] == [
        ("pos", "1"), ("pos", "2")]


def test_remove_and_add_points_by_click(scene):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    node.AddControlPoint(1, 2, 3)
    volume = volume_node_from_sitk(scene, oblique_image())
    (click,) = markups.current_clicks(volume, node)
    assert markups.remove_click(scene, click)
    assert node.GetNumberOfControlPoints() == 0
    assert not markups.remove_click(scene, click)
    assert markups.add_point_world(node, click.world) is not None
    assert markups.current_clicks(volume, node)[0].world == click.world


def _segmentation_under(scene, rotation, shift):
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetAndObserveTransformNodeID(linear_transform_node(scene, rotation, shift).GetID())
    return segmentation


def _internal_voxels(segmentation, segment_id):
    segment = segmentation.GetSegmentation().GetSegment(segment_id)
    labelmap = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    voxels = vtk.util.numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())
    return labelmap.GetExtent(), (voxels == segment.GetLabelValue()).copy()


def test_mask_lands_in_place_under_different_parent_transforms(scene):
    image = oblique_image()
    volume = volume_node_from_sitk(scene, image)
    volume.SetAndObserveTransformNodeID(linear_transform_node(scene, (20, 0, 10), (5, -7, 12)).GetID())
    segmentation = _segmentation_under(scene, (0, -15, 5), (-3, 2, 1))
    other = segmentation.GetSegmentation().AddEmptySegment("other")
    target = segmentation.GetSegmentation().AddEmptySegment("target")
    other_mask = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    other_mask[2:8, 3:12, 10:25] = 1  # overlaps the target
    other_image = sitk.GetImageFromArray(other_mask)
    other_image.CopyInformation(image)
    segment_io.write_mask_to_segment(other_image, volume, segmentation, other)
    other_before = _internal_voxels(segmentation, other)

    mask = np.zeros_like(other_mask)
    mask[3:7, 5:15, 8:20] = 1
    mask_image = sitk.GetImageFromArray(mask)
    mask_image.CopyInformation(image)
    segment_io.write_mask_to_segment(mask_image, volume, segmentation, target)

    # Independent check: every voxel of the segment, carried through the transforms, lands on the mask.
    kji, inside = segment_voxels_in_volume_indices(segmentation, target, volume)
    assert inside.all() and len(kji) == mask.sum()
    assert mask[tuple(kji.T)].all()
    # The other segment is untouched, bit for bit.
    other_after = _internal_voxels(segmentation, other)
    assert other_after[0] == other_before[0] and np.array_equal(other_after[1], other_before[1])
    # Reading the segment back into the volume grid gives the mask again.
    back = segment_io.read_segment_in_volume_grid(segmentation, target, volume)
    assert np.array_equal(sitk.GetArrayFromImage(back), mask)
    assert np.allclose(back.GetOrigin(), image.GetOrigin()) and np.allclose(back.GetDirection(), image.GetDirection())


def test_segmentation_with_its_own_geometry_is_respected(scene):
    image = oblique_image()
    volume = volume_node_from_sitk(scene, image)
    segmentation = _segmentation_under(scene, (0, 0, 25), (4, 4, -4))
    # A segmentation made on another, coarser, axis-aligned grid: its reference geometry must be kept.
    reference = sitk.Image(40, 40, 30, sitk.sitkUInt8)
    reference.SetSpacing((2.0, 2.0, 3.0))
    reference.SetOrigin(np.array(image.TransformIndexToPhysicalPoint((15, 10, 5))) - 40)
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume_node_from_sitk(scene, reference, "ref"))
    name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    geometry_before = segmentation.GetSegmentation().GetConversionParameter(name)
    target = segmentation.GetSegmentation().AddEmptySegment("target")
    mask = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    mask[2:9, 4:18, 6:26] = 1
    mask_image = sitk.GetImageFromArray(mask)
    mask_image.CopyInformation(image)
    segment_io.write_mask_to_segment(mask_image, volume, segmentation, target)
    assert segmentation.GetSegmentation().GetConversionParameter(name) == geometry_before
    labelmap = segmentation.GetSegmentation().GetSegment(target).GetRepresentation(
        slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    spacing = labelmap.GetSpacing()
    np.testing.assert_allclose(spacing, (2.0, 2.0, 3.0), atol=1e-6)
    back = sitk.GetArrayFromImage(segment_io.read_segment_in_volume_grid(segmentation, target, volume))
    assert dice(back, mask) > 0.85  # coarser grid: boundary voxels differ


def test_reading_a_shared_layer_keeps_only_that_segment(scene):
    image = oblique_image()
    volume = volume_node_from_sitk(scene, image)
    segmentation = _segmentation_under(scene, (10, 0, 0), (0, 0, 0))
    ids = [segmentation.GetSegmentation().AddEmptySegment(name) for name in ("a", "b")]
    masks = []
    for index, segment_id in enumerate(ids):
        mask = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
        mask[2:5, 2 + 8 * index:7 + 8 * index, 3:9] = 1  # disjoint: Slicer may share one layer
        mask_image = sitk.GetImageFromArray(mask)
        mask_image.CopyInformation(image)
        segment_io.write_mask_to_segment(mask_image, volume, segmentation, segment_id)
        masks.append(mask)
    assert segmentation.GetSegmentation().GetNumberOfLayers() == 1
    for segment_id, mask in zip(ids, masks):
        back = segment_io.read_segment_in_volume_grid(segmentation, segment_id, volume)
        assert np.array_equal(sitk.GetArrayFromImage(back), mask)


def test_empty_mask_clears_only_that_segment(scene):
    image = oblique_image()
    volume = volume_node_from_sitk(scene, image)
    segmentation = _segmentation_under(scene, (0, 0, 0), (1, 1, 1))
    a, b = (segmentation.GetSegmentation().AddEmptySegment(n) for n in ("a", "b"))
    mask = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    mask[1:4, 1:4, 1:4] = 1
    mask_image = sitk.GetImageFromArray(mask)
    mask_image.CopyInformation(image)
    for segment_id in (a, b):
        segment_io.write_mask_to_segment(mask_image, volume, segmentation, segment_id)
    segment_io.write_mask_to_segment(sitk.Image(mask_image.GetSize(), sitk.sitkUInt8), volume, segmentation, a)
    assert segment_io.read_segment_in_volume_grid(segmentation, a, volume) is None
    assert np.array_equal(sitk.GetArrayFromImage(segment_io.read_segment_in_volume_grid(segmentation, b, volume)), mask)


def test_writing_to_a_missing_segment_is_a_user_error(scene):
    image = oblique_image()
    volume = volume_node_from_sitk(scene, image)
    segmentation = _segmentation_under(scene, (0, 0, 0), (0, 0, 0))
    with pytest.raises(InputImageError):
        segment_io.write_mask_to_segment(sitk.Image(image.GetSize(), sitk.sitkUInt8), volume, segmentation, "nope")


def test_dicom_ct_mask_round_trip_under_rotated_transforms(scene, shared_data):
    image = read_dicom_series(shared_data / "ct_abdomen_dicom" / "dicom")
    volume = volume_node_from_sitk(scene, image, "CT")
    volume.SetAndObserveTransformNodeID(linear_transform_node(scene, (20, 5, -10), (15, -30, 40)).GetID())
    segmentation = _segmentation_under(scene, (-5, 10, 30), (-20, 8, 3))
    target = segmentation.GetSegmentation().AddEmptySegment("bone")
    voxels = sitk.GetArrayViewFromImage(image)
    mask = np.zeros(voxels.shape, np.uint8)
    mask[4:16, 150:350, 150:350] = voxels[4:16, 150:350, 150:350] > 200  # bone-like voxels in a box
    mask_image = sitk.GetImageFromArray(mask)
    mask_image.CopyInformation(image)
    segment_io.write_mask_to_segment(mask_image, volume, segmentation, target)
    kji, inside = segment_voxels_in_volume_indices(segmentation, target, volume)
    assert inside.all() and mask[tuple(kji.T)].all() and len(kji) == mask.sum()
    back = segment_io.read_segment_in_volume_grid(segmentation, target, volume)
    assert np.array_equal(sitk.GetArrayFromImage(back), mask)
