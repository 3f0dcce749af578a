"""Volume node <-> SimpleITK image, in the volume's LOCAL frame (before its parent transform).

Slicer stores geometry as an IJK-to-RAS matrix; SimpleITK (ITK) uses LPS origin / spacing / direction.
The two differ by the sign of the first two physical axes.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import vtk
from vtk.util import numpy_support

from sammed3d.errors import InputImageError

RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0])


def matrix_to_numpy(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    """A vtkMatrix4x4 as a 4x4 numpy array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def numpy_to_matrix(array) -> vtk.vtkMatrix4x4:
    """A 4x4 numpy array as a vtkMatrix4x4."""
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r][c]))
    return matrix


def ijk_to_ras_from_sitk(image: sitk.Image) -> np.ndarray:
    """The 4x4 voxel-index (i, j, k) -> local RAS matrix of a SimpleITK image."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = RAS_FROM_LPS @ direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = RAS_FROM_LPS @ np.array(image.GetOrigin(), dtype=float)
    return matrix


def set_sitk_geometry_from_ijk_to_ras(image: sitk.Image, ijk_to_ras: np.ndarray) -> None:
    """Give ``image`` the origin / spacing / direction (LPS) that an IJK-to-RAS matrix describes."""
    linear = RAS_FROM_LPS @ np.asarray(ijk_to_ras, dtype=float)[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    if np.any(spacing <= 0):
        raise InputImageError("The volume has a degenerate geometry (zero spacing).")
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (linear / spacing).ravel()])
    image.SetOrigin([float(v) for v in RAS_FROM_LPS @ np.asarray(ijk_to_ras, dtype=float)[:3, 3]])


def volume_ijk_to_ras(volume_node) -> np.ndarray:
    """IJK-to-local-RAS of a volume node, with IJK counted from the image data's first voxel (extent start)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = matrix_to_numpy(matrix)
    extent = volume_node.GetImageData().GetExtent()
    start = np.array([extent[0], extent[2], extent[4], 1.0])
    ijk_to_ras[:, 3] = ijk_to_ras @ start
    return ijk_to_ras


def volume_to_sitk(volume_node) -> sitk.Image:
    """Copy a scalar volume node into a SimpleITK image (voxel type kept, geometry in the volume's local frame)."""
    if volume_node is None or not volume_node.IsA("vtkMRMLScalarVolumeNode"):
        raise InputImageError("Select a scalar volume (e.g. a CT or MR image) as input volume.")
    image_data = volume_node.GetImageData()
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        raise InputImageError("The input volume '%s' holds no image data." % volume_node.GetName())
    if image_data.GetNumberOfScalarComponents() != 1:
        raise InputImageError("The input volume '%s' has %d components; a single-component volume is needed."
                              % (volume_node.GetName(), image_data.GetNumberOfScalarComponents()))
    dims = image_data.GetDimensions()
    if min(dims) < 1:
        raise InputImageError("The input volume '%s' is empty." % volume_node.GetName())
    # VTK stores voxels with i fastest: as a C-order array that is [k, j, i], which is SimpleITK's order too.
    voxels = numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars()).reshape(dims[::-1])
    image = sitk.GetImageFromArray(np.array(voxels, copy=True))
    set_sitk_geometry_from_ijk_to_ras(image, volume_ijk_to_ras(volume_node))
    return image
