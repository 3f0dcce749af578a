"""Images and segmentations in and out of the web app's MRML scene.

Images are read with :func:`sammed3d.read_image` (NIfTI, NRRD, MHA, a DICOM folder), exactly as ``sammed3d segment``
reads them, so a point saved here means the same voxel there. Segmentations are read as Slicer ``.seg.nrrd`` (names,
colours kept) or as label images (one segment per label value).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import vtk
from vtk.util import numpy_support

import slicer

from sammed3d.errors import InputImageError
from SAMMed3DSlicerLib.segment_io import write_mask_to_segment
from SAMMed3DSlicerLib.volume_conversion import ijk_to_ras_from_sitk, numpy_to_matrix

SEGMENTATION_SUFFIX = ".seg.nrrd"


def read_image_path(path) -> sitk.Image:
    """Read an image file or DICOM folder, as ``sammed3d segment`` does (a short error, never a traceback)."""
    from sammed3d.image_io import read_image

    return read_image(str(path))


def add_volume_node(scene, image: sitk.Image, name: str):
    """A scalar volume node holding ``image`` (voxels copied, its LPS geometry turned into IJK-to-RAS), greyscale."""
    voxels = sitk.GetArrayFromImage(image)
    if voxels.ndim != 3:
        raise InputImageError("a 3D single-component image is needed (got %d dimensions)" % voxels.ndim)
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(*image.GetSize())
    image_data.AllocateScalars(numpy_support.get_vtk_array_type(voxels.dtype), 1)
    numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars())[:] = voxels.ravel()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GetUniqueNameByString(name))
    node.SetAndObserveImageData(image_data)
    node.SetIJKToRASMatrix(numpy_to_matrix(ijk_to_ras_from_sitk(image)))
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is not None:
        display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
        display.AutoWindowLevelOn()
    return node


def add_segmentation_node(scene, volume_node, name: str = "Segmentation"):
    """An empty binary-labelmap segmentation with the volume's geometry as reference, shown in the slice views."""
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GetUniqueNameByString(name))
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    return node


def load_segmentation_file(scene, path, volume_node):
    """A segmentation node read from ``path``: a Slicer .seg.nrrd, or a label image (one segment per label)."""
    path = Path(path)
    if not path.exists():
        raise InputImageError("segmentation file not found: %s" % path)
    if path.name.lower().endswith(SEGMENTATION_SUFFIX):
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GetUniqueNameByString("Segmentation"))
        storage = slicer.vtkMRMLSegmentationStorageNode()
        storage.SetFileName(str(path))
        if not storage.ReadData(node):
            scene.RemoveNode(node)
            raise InputImageError("cannot read the segmentation %s" % path)
        node.CreateDefaultDisplayNodes()
        if not node.GetSegmentation().GetConversionParameter(
                slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()):
            node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        return node
    labels = read_image_path(path)
    node = add_segmentation_node(scene, volume_node)
    voxels = sitk.GetArrayViewFromImage(labels)
    for value in (int(v) for v in np.unique(voxels) if v != 0):
        mask = sitk.GetImageFromArray((voxels == value).astype(np.uint8))
        mask.CopyInformation(labels)
        segment_id = node.GetSegmentation().AddEmptySegment("", "Segment_%d" % value)
        write_mask_to_segment(mask, volume_node, node, segment_id)
    return node


def extract_upload(files, folder: Path) -> Path:
    """Write browser uploads (``[{"name", "content"}]``) into ``folder``; return what to read.

    One image file: that file. A .zip (a DICOM series): the folder it unpacks to. Several files: the folder
    (a DICOM series chosen file by file).
    """
    written = []
    for item in files:
        name = Path(str(item.get("name") or "upload")).name  # no directories from the client
        if not name or name in (".", ".."):
            raise InputImageError("an uploaded file has no name")
        content = item.get("content")
        if isinstance(content, list):  # trame may deliver chunks
            content = b"".join(content)
        target = folder / name
        target.write_bytes(content or b"")
        written.append(target)
    if not written:
        raise InputImageError("no file was uploaded")
    if len(written) == 1 and written[0].suffix.lower() == ".zip":
        unpacked = folder / "unzipped"
        unpacked.mkdir()
        try:
            with zipfile.ZipFile(str(written[0])) as archive:
                for member in archive.infolist():
                    member_path = Path(member.filename)
                    if member.is_dir() or member_path.is_absolute() or ".." in member_path.parts:
                        continue
                    target = unpacked / member_path.name
                    with archive.open(member) as source:
                        target.write_bytes(source.read())
        except zipfile.BadZipFile:
            raise InputImageError("%s is not a valid zip file" % written[0].name) from None
        return unpacked
    if len(written) == 1:
        return written[0]
    return folder
