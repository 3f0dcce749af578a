"""A mask in a volume's grid <-> one segment of a segmentation node, honouring both nodes' parent transforms.

The mask lives in the volume's local frame; the segment's labelmap lives in the segmentation's local frame, in
the segmentation's reference geometry. Going from one to the other composes "volume parent transform, then the
inverse of the segmentation's parent transform" (linear or not) and resamples by nearest neighbour.
Only the named segment is written (MODE_REPLACE): other segments, shared layers included, stay as they are.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import SimpleITK as sitk
import vtk
from vtk.util import numpy_support
from slicer import (
    vtkMRMLTransformNode,
    vtkOrientedImageData,
    vtkOrientedImageDataResample,
    vtkSegmentationConverter,
    vtkSlicerSegmentationsModuleLogic,
)

from sammed3d.errors import InputImageError

from .volume_conversion import (
    ijk_to_ras_from_sitk,
    matrix_to_numpy,
    numpy_to_matrix,
    set_sitk_geometry_from_ijk_to_ras,
    volume_ijk_to_ras,
)


def oriented_image_from_array(voxels: np.ndarray, ijk_to_ras: np.ndarray) -> vtkOrientedImageData:
    """A [k, j, i] uint8 array with an IJK-to-RAS matrix as a vtkOrientedImageData (extent starting at 0)."""
    voxels = np.ascontiguousarray(voxels, dtype=np.uint8)
    image = vtkOrientedImageData()
    k, j, i = voxels.shape
    image.SetExtent(0, i - 1, 0, j - 1, 0, k - 1)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = voxels.ravel()
    image.SetGeometryFromImageToWorldMatrix(numpy_to_matrix(ijk_to_ras))
    return image


def oriented_image_from_sitk(mask: sitk.Image) -> vtkOrientedImageData:
    """A SimpleITK mask (LPS geometry) as a uint8 vtkOrientedImageData in the same physical (RAS) frame."""
    voxels = (sitk.GetArrayViewFromImage(mask) > 0).astype(np.uint8)
    return oriented_image_from_array(voxels, ijk_to_ras_from_sitk(mask))


def mask_content_image(mask: sitk.Image) -> Optional[vtkOrientedImageData]:
    """The mask's non-zero bounding box as a uint8 vtkOrientedImageData (same physical placement); None if empty."""
    voxels = sitk.GetArrayViewFromImage(mask)
    present = [np.flatnonzero(voxels.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    if any(len(p) == 0 for p in present):
        return None
    (k0, k1), (j0, j1), (i0, i1) = [(p[0], p[-1] + 1) for p in present]
    ijk_to_ras = ijk_to_ras_from_sitk(mask)
    ijk_to_ras[:, 3] = ijk_to_ras @ np.array([i0, j0, k0, 1.0])  # the crop's first voxel becomes index 0
    return oriented_image_from_array((voxels[k0:k1, j0:j1, i0:i1] > 0).astype(np.uint8), ijk_to_ras)


def volume_geometry(volume_node) -> vtkOrientedImageData:
    """An empty vtkOrientedImageData carrying the volume's local geometry and extent (no voxels allocated)."""
    image = vtkOrientedImageData()
    extent = volume_node.GetImageData().GetExtent()
    image.SetExtent(0, extent[1] - extent[0], 0, extent[3] - extent[2], 0, extent[5] - extent[4])
    image.SetGeometryFromImageToWorldMatrix(numpy_to_matrix(volume_ijk_to_ras(volume_node)))
    return image


def transform_between(source_node, target_node) -> vtk.vtkAbstractTransform:
    """Local RAS of ``source_node`` -> local RAS of ``target_node`` (source parent, then inverse target parent).

    A vtkTransform when both parents are linear (resampling with it is several times faster), else a
    vtkGeneralTransform (non-linear transforms are followed exactly).
    """
    source_parent = source_node.GetParentTransformNode()
    target_parent = target_node.GetParentTransformNode()
    if all(parent is None or parent.IsTransformToWorldLinear() for parent in (source_parent, target_parent)):
        matrices = []
        for parent in (source_parent, target_parent):
            matrix = vtk.vtkMatrix4x4()
            if parent is not None:
                parent.GetMatrixTransformToWorld(matrix)
            matrices.append(matrix_to_numpy(matrix))
        linear = vtk.vtkTransform()
        linear.SetMatrix(numpy_to_matrix(np.linalg.inv(matrices[1]) @ matrices[0]))
        return linear
    transform = vtk.vtkGeneralTransform()
    vtkMRMLTransformNode.GetTransformBetweenNodes(source_parent, target_parent, transform)
    return transform


def _is_identity(transform) -> bool:
    if not isinstance(transform, vtk.vtkTransform):
        return False
    return bool(np.allclose(matrix_to_numpy(transform.GetMatrix()), np.eye(4), atol=1e-9))


def crop_to_content(image: vtkOrientedImageData) -> Optional[vtkOrientedImageData]:
    """The sub-image over the non-zero voxels' bounding box (same geometry), or None when all voxels are zero."""
    extent = [0, -1, 0, -1, 0, -1]
    if not vtkOrientedImageDataResample.CalculateEffectiveExtent(image, extent):
        return None
    if extent[0] > extent[1] or extent[2] > extent[3] or extent[4] > extent[5]:
        return None
    pad = vtk.vtkImageConstantPad()
    pad.SetInputData(image)
    pad.SetOutputWholeExtent(extent)
    pad.Update()
    cropped = vtkOrientedImageData()
    cropped.ShallowCopy(pad.GetOutput())
    cropped.CopyDirections(image)
    return cropped


def _image_to_world(image) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return matrix


def restrict_extent_to_content(reference: vtkOrientedImageData, content: vtkOrientedImageData, content_to_reference):
    """Shrink ``reference``'s extent to the voxels that ``content`` (after the transform) can reach, plus one voxel.

    Resampling then touches only that box instead of the whole reference grid (a 512 x 512 x N CT otherwise).
    """
    index_transform = vtk.vtkGeneralTransform()
    index_transform.PostMultiply()
    index_transform.Concatenate(_image_to_world(content))
    index_transform.Concatenate(content_to_reference)
    world_to_reference = vtk.vtkMatrix4x4()
    reference.GetWorldToImageMatrix(world_to_reference)
    index_transform.Concatenate(world_to_reference)
    reached = [0, -1, 0, -1, 0, -1]
    vtkOrientedImageDataResample.TransformExtent(content.GetExtent(), index_transform, reached)
    full = reference.GetExtent()
    extent = []
    for axis in range(3):
        extent += [max(full[2 * axis], reached[2 * axis] - 1), min(full[2 * axis + 1], reached[2 * axis + 1] + 1)]
    reference.SetExtent(extent)
    return all(extent[2 * a] <= extent[2 * a + 1] for a in range(3))


def ensure_reference_geometry(segmentation_node, volume_node) -> None:
    """Give the segmentation the volume's geometry as reference when it has none yet (as the Segment Editor does)."""
    name = vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    if not segmentation_node.GetSegmentation().GetConversionParameter(name):
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)


def reference_geometry(segmentation_node) -> Optional[vtkOrientedImageData]:
    """The segmentation's reference image geometry (segmentation-local frame), or None when unset."""
    name = vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    text = segmentation_node.GetSegmentation().GetConversionParameter(name)
    if not text:
        return None
    geometry = vtkOrientedImageData()
    if not vtkSegmentationConverter.DeserializeImageGeometry(text, geometry, False):
        return None
    return geometry


def _check_labelmap_source(segmentation_node) -> None:
    segmentation = segmentation_node.GetSegmentation()
    labelmap = vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    source = (segmentation.GetSourceRepresentationName() if hasattr(segmentation, "GetSourceRepresentationName")
              else segmentation.GetMasterRepresentationName())
    if source != labelmap:
        raise InputImageError("The segmentation '%s' is stored as '%s'; interactive segmentation needs a binary "
                              "labelmap segmentation." % (segmentation_node.GetName(), source))


def clear_segment(segmentation_node, segment_id: str) -> None:
    """Empty one segment and tell the views (vtkSegmentation.ClearSegment alone leaves the old overlay shown)."""
    segmentation = segmentation_node.GetSegmentation()
    segmentation.ClearSegment(segment_id)
    segment = segmentation.GetSegment(segment_id)
    if segment is not None:
        segment.Modified()  # -> vtkSegmentation.SegmentModified: the displayable managers redraw


def write_mask_to_segment(mask: sitk.Image, volume_node, segmentation_node, segment_id: str) -> None:
    """Replace the content of one segment by a mask given in ``volume_node``'s grid (other segments untouched)."""
    segmentation = segmentation_node.GetSegmentation()
    if segmentation.GetSegment(segment_id) is None:
        raise InputImageError("The segmentation '%s' has no segment '%s'." % (segmentation_node.GetName(), segment_id))
    _check_labelmap_source(segmentation_node)
    ensure_reference_geometry(segmentation_node, volume_node)
    content = mask_content_image(mask)
    logic = vtkSlicerSegmentationsModuleLogic
    if content is None:
        clear_segment(segmentation_node, segment_id)
        return
    to_segmentation = transform_between(volume_node, segmentation_node)
    target = reference_geometry(segmentation_node)
    if target is None or (_is_identity(to_segmentation)
                          and vtkOrientedImageDataResample.DoGeometriesMatch(content, target)):
        labelmap = content
    else:
        labelmap = vtkOrientedImageData()
        if not restrict_extent_to_content(target, content, to_segmentation):
            raise InputImageError("The segment falls outside the segmentation's geometry.")
        vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
            content, target, labelmap, False, False, to_segmentation)
    if not logic.SetBinaryLabelmapToSegment(labelmap, segmentation_node, segment_id, logic.MODE_REPLACE):
        raise InputImageError("Slicer refused to update segment '%s'." % segment_id)


def segment_labelmap(segmentation_node, segment_id: str) -> Optional[vtkOrientedImageData]:
    """The segment's own voxels (0/1, segmentation-local frame), cropped to content; None when empty or absent."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        return None
    internal = segment.GetRepresentation(vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    if internal is None or internal.GetPointData().GetScalars() is None:
        return None
    # Layers are shared between segments: keep only this segment's label value.
    threshold = vtk.vtkImageThreshold()
    threshold.SetInputData(internal)
    threshold.ThresholdBetween(segment.GetLabelValue(), segment.GetLabelValue())
    threshold.SetInValue(1)
    threshold.SetOutValue(0)
    threshold.SetOutputScalarTypeToUnsignedChar()
    threshold.Update()
    binary = vtkOrientedImageData()
    binary.ShallowCopy(threshold.GetOutput())
    binary.CopyDirections(internal)
    return crop_to_content(binary)


def read_segment_in_volume_grid(segmentation_node, segment_id: str, volume_node) -> Optional[sitk.Image]:
    """One segment resampled into ``volume_node``'s grid as a SimpleITK uint8 mask; None when it is empty."""
    labelmap = segment_labelmap(segmentation_node, segment_id)
    if labelmap is None:
        return None
    reference = volume_geometry(volume_node)
    dims = [reference.GetExtent()[2 * a + 1] + 1 for a in range(3)]
    voxels = np.zeros(dims[::-1], dtype=np.uint8)
    to_volume = transform_between(segmentation_node, volume_node)
    if not restrict_extent_to_content(reference, labelmap, to_volume):
        return None  # the segment lies entirely outside the volume
    resampled = vtkOrientedImageData()
    vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        labelmap, reference, resampled, False, False, to_volume)
    extent = resampled.GetExtent()
    if resampled.GetPointData().GetScalars() is not None and extent[0] <= extent[1]:
        # The resampled image covers only the transformed content, clipped to the volume: paste it in place.
        part = numpy_support.vtk_to_numpy(resampled.GetPointData().GetScalars()).reshape(
            extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
        voxels[extent[4]:extent[5] + 1, extent[2]:extent[3] + 1, extent[0]:extent[1] + 1] = part > 0
    if not voxels.any():
        return None
    mask = sitk.GetImageFromArray(voxels)
    set_sitk_geometry_from_ijk_to_ras(mask, volume_ijk_to_ras(volume_node))
    return mask
