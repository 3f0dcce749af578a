"""Helpers for tests on real MRML (slicer-core): a scene with the logics the segmentation code needs."""
import numpy as np
import SimpleITK as sitk
import vtk
from vtk.util import numpy_support

import slicer

from SAMMed3DSlicerLib.segment_io import write_mask_to_segment as _write_mask_to_segment
from SAMMed3DSlicerLib.volume_conversion import ijk_to_ras_from_sitk, numpy_to_matrix, volume_ijk_to_ras


def new_scene():
    """A scene with an application logic and the segmentations logic (registers the segmentation converters)."""
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    segmentations_logic = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentations_logic.SetMRMLApplicationLogic(app_logic)
    segmentations_logic.SetMRMLScene(scene)
    scene._keep_alive = (app_logic, segmentations_logic)  # noqa: SLF001 - keep the logics as long as the scene
    return scene


def volume_node_from_sitk(scene, image, name="Volume"):
    """A scalar volume node holding a copy of a SimpleITK image (its LPS geometry turned into IJK-to-RAS)."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    voxels = sitk.GetArrayFromImage(image)
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(*image.GetSize())
    image_data.AllocateScalars(numpy_support.get_vtk_array_type(voxels.dtype), 1)
    numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars())[:] = voxels.ravel()
    node.SetAndObserveImageData(image_data)
    node.SetIJKToRASMatrix(numpy_to_matrix(ijk_to_ras_from_sitk(image)))
    return node


def linear_transform_node(scene, rotation_xyz_degrees, translation, parent=None):
    """A linear transform node: rotate about x, y, z (degrees), then shift (mm)."""
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform = vtk.vtkTransform()
    transform.PostMultiply()
    transform.RotateX(rotation_xyz_degrees[0])
    transform.RotateY(rotation_xyz_degrees[1])
    transform.RotateZ(rotation_xyz_degrees[2])
    transform.Translate(*translation)
    node.SetMatrixTransformToParent(transform.GetMatrix())
    if parent is not None:
        node.SetAndObserveTransformNodeID(parent.GetID())
    return node


def to_world(node, points_local):
    """Points (N x 3) in ``node``'s local RAS -> world RAS through its parent transforms."""
    transform = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(node.GetParentTransformNode(), None, transform)
    return np.array([transform.TransformPoint([float(v) for v in p]) for p in np.atleast_2d(points_local)])


def voxel_centres_local(volume_node, kji):
    """Local RAS of voxel centres given as [k, j, i] rows."""
    kji = np.atleast_2d(kji).astype(float)
    ijk1 = np.c_[kji[:, ::-1], np.ones(len(kji))]
    return (volume_ijk_to_ras(volume_node) @ ijk1.T).T[:, :3]


def segment_voxels_in_volume_indices(segmentation_node, segment_id, volume_node):
    """Every voxel of a segment, mapped (independently of the code under test: matrices and transforms only) to
    the nearest voxel index [k, j, i] of ``volume_node``; returns (indices, inside-volume flags)."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    labelmap = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    extent = labelmap.GetExtent()
    voxels = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(
        extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    k, j, i = np.nonzero(voxels == segment.GetLabelValue())
    matrix = vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(matrix)
    image_to_local = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    local = (image_to_local @ np.stack([i + extent[0], j + extent[2], k + extent[4], np.ones_like(i)]).astype(float))
    between = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(
        segmentation_node.GetParentTransformNode(), volume_node.GetParentTransformNode(), between)
    volume_local = np.array([between.TransformPoint(p) for p in local[:3].T])
    ras_to_ijk = np.linalg.inv(volume_ijk_to_ras(volume_node))
    ijk = np.rint((ras_to_ijk @ np.c_[volume_local, np.ones(len(volume_local))].T)[:3]).astype(int)
    dims = volume_node.GetImageData().GetDimensions()
    inside = np.all((ijk >= 0) & (ijk < np.array(dims)[:, None]), axis=0)
    return ijk[::-1].T, inside


def dice(a, b):
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total


def read_dicom_series(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def build_scene(image):
    scene = new_scene()
    volume = volume_node_from_sitk(scene, image, "CT")
    volume.SetAndObserveTransformNodeID(linear_transform_node(scene, (20, -8, 12), (15, -30, 40)).GetID())
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetAndObserveTransformNodeID(linear_transform_node(scene, (-6, 10, 25), (-20, 8, 3)).GetID())
    other = segmentation.GetSegmentation().AddEmptySegment("other")
    other_mask = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    other_mask[5:15, 200:300, 180:330] = 1  # overlaps where we click
    other_image = sitk.GetImageFromArray(other_mask)
    other_image.CopyInformation(image)
    _write_mask_to_segment(other_image, volume, segmentation, other)
    target = segmentation.GetSegmentation().AddEmptySegment("target")
    return scene, volume, segmentation, other, target


def internal_voxels(segmentation, segment_id):
    segment = segmentation.GetSegmentation().GetSegment(segment_id)
    labelmap = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    voxels = vtk.util.numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())
    return labelmap.GetExtent(), (voxels == segment.GetLabelValue()).copy()


def place(node, volume, kji):
    """Add a control point at the world position of a voxel centre of ``volume``; returns its local RAS."""
    local = voxel_centres_local(volume, [kji])[0]
    node.AddControlPointWorld(vtk.vtkVector3d(*to_world(volume, local)[0]))
    return tuple(local)
