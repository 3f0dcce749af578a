"""Read and validate 3D images (files or DICOM series folders) and write images atomically."""
from __future__ import annotations

import gzip
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import SimpleITK as sitk

from .atomic import atomic_path
from .errors import InputImageError, SamMed3DError

# Scalar pixel types that convert to float32 without losing meaning (no complex, vector or label-map types).
_SCALAR_TYPES = {
    sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkUInt32, sitk.sitkInt32,
    sitk.sitkUInt64, sitk.sitkInt64, sitk.sitkFloat32, sitk.sitkFloat64,
}
#: File endings write_image_atomic accepts (single-file formats only, so one os.replace publishes the result).
WRITE_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha")


def _first_line(error: Exception) -> str:
    """A short, single-line summary of an ITK/OS error (ITK messages span several lines with source paths)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Exception thrown in SimpleITK")]
    lines = [re.sub(r"^(sitk::ERROR:|ITK ERROR:)\s*(\w+\(0x[0-9a-fA-F]+\):\s*)?", "", line) for line in lines]
    details = [line for line in lines if line.startswith("[nrrd]") and "trouble" not in line]
    message = details[-1] if details else (lines[0] if lines else type(error).__name__)
    if message.startswith("Unable to determine ImageIO reader"):
        message = "not a readable image file (unknown format or corrupt header)"
    return message[:200]


def _describe(image: sitk.Image) -> str:
    return "x".join(str(n) for n in image.GetSize())


def image_on_grid(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """A [k, j, i] array as a SimpleITK image with ``reference``'s origin, spacing and direction."""
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def validate_image(image: sitk.Image, name: str = "image") -> sitk.Image:
    """Check that ``image`` is a single-component 3D scalar volume with sane geometry; return it unchanged.

    Raises InputImageError (one line) for 2D images (including 3D images with a single slice), 4D images,
    vector/multi-component images, complex or label-map pixel types, non-positive spacing or a singular direction.
    """
    if not isinstance(image, sitk.Image):
        raise InputImageError("%s is not a SimpleITK image (got %s)" % (name, type(image).__name__))
    dimension = image.GetDimension()
    if dimension != 3:
        raise InputImageError("%s is %dD (size %s); a 3D volume is needed" % (name, dimension, _describe(image)))
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputImageError(
            "%s has %d components per voxel (vector/RGB/4D data); a single-component 3D volume is needed"
            % (name, image.GetNumberOfComponentsPerPixel()))
    if image.GetPixelID() not in _SCALAR_TYPES:
        raise InputImageError("%s has unsupported pixel type %s" % (name, image.GetPixelIDTypeAsString()))
    if min(image.GetSize()) < 2:
        raise InputImageError("%s is 2D (size %s); a 3D volume with at least 2 voxels per axis is needed"
                              % (name, _describe(image)))
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputImageError("%s has invalid spacing %s" % (name, tuple(spacing)))
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-6:
        raise InputImageError("%s has a singular direction matrix" % name)
    if not np.all(np.isfinite(image.GetOrigin())):
        raise InputImageError("%s has a non-finite origin" % name)
    return image


def _read_dicom_folder(folder: Path) -> sitk.Image:
    """Read the largest DICOM series in ``folder``, slices sorted by GDCM (image position along the normal)."""
    reader = sitk.ImageSeriesReader()
    try:
        series_ids = reader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as error:
        raise InputImageError("cannot scan DICOM folder %s: %s" % (folder, _first_line(error))) from None
    best = []
    for series_id in series_ids:
        files = reader.GetGDCMSeriesFileNames(str(folder), series_id)
        if len(files) > len(best):
            best = files
    if not best:
        raise InputImageError("no DICOM series found in folder %s" % folder)
    reader.SetFileNames(best)
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise InputImageError("cannot read DICOM series in %s: %s" % (folder, _first_line(error))) from None


def _nifti_expected_bytes(header: bytes) -> Optional[int]:
    """Header + voxel bytes a NIfTI-1/2 file must hold, or None if the header is not recognised."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            dims = struct.unpack(endian + "8q", header[16:80])
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        return None
    if not 1 <= dims[0] <= 7 or bitpix <= 0:
        return None
    return max(offset, 352) + int(np.prod([max(int(n), 1) for n in dims[1:dims[0] + 1]])) * bitpix // 8


def _check_nifti_complete(path: Path) -> None:
    """ITK reads truncated NIfTI files without complaint (missing voxels become 0): detect that here.

    Uncompressed: compare the file size. Gzipped: the gzip trailer holds the uncompressed size (mod 2^32); only
    when it disagrees (a truncated or multi-member file) is the stream decompressed to count its bytes.
    """
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return
    compressed = name.endswith(".gz")
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as handle:
            expected = _nifti_expected_bytes(handle.read(540))
        if expected is None:
            return
        if not compressed:
            actual = path.stat().st_size
        else:
            with open(path, "rb") as handle:
                handle.seek(-4, os.SEEK_END)
                actual = struct.unpack("<I", handle.read(4))[0]
            if actual != expected % 2 ** 32:
                actual = 0
                with gzip.open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 22), b""):
                        actual += len(block)
    except (OSError, EOFError, zlib.error) as error:
        raise InputImageError("image %s is corrupt or truncated: %s" % (path, _first_line(error))) from None
    if actual < expected:
        raise InputImageError("image %s is truncated: %d of %d bytes" % (path, actual, expected))


def read_image(path) -> sitk.Image:
    """Read a 3D image from a file (NIfTI, NRRD, MHA, ... anything ITK reads) or a DICOM series folder.

    A folder is read as the DICOM series with the most files. The pixel type is kept as stored (int16 CT stays
    int16); the result is validated with :func:`validate_image`. Every failure raises a one-line InputImageError.
    """
    path = Path(path)
    if not path.exists():
        raise InputImageError("image not found: %s" % path)
    if path.is_dir():
        image = _read_dicom_folder(path)
    else:
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as error:
            raise InputImageError("cannot read image %s: %s" % (path, _first_line(error))) from None
        _check_nifti_complete(path)
    return validate_image(image, name="image %s" % path.name)


def _nifti_float_layout(header: bytes):
    """(numpy dtype, voxel offset, voxel count) of a float32/float64 NIfTI-1/2 file, else None."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype = struct.unpack(endian + "h", header[70:72])[0]
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            dims = struct.unpack(endian + "8q", header[16:80])
            datatype = struct.unpack(endian + "h", header[12:14])[0]
            offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        return None
    kind = {16: "f4", 64: "f8"}.get(datatype)
    if kind is None or not 1 <= dims[0] <= 7:
        return None
    return np.dtype(endian + kind), max(offset, 352), int(np.prod([max(int(n), 1) for n in dims[1:dims[0] + 1]]))


def _count_nonfinite_in_nifti(path: Path) -> int:
    """Non-finite voxels stored in a float NIfTI file (ITK's NIfTI reader silently turns them into 0)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(str(path), "rb") as handle:
            layout = _nifti_float_layout(handle.read(540))
            if layout is None:
                return 0
            dtype, offset, count = layout
            handle.seek(offset)
            found, left, block = 0, count, max(1, (1 << 24) // dtype.itemsize)
            while left > 0:
                data = np.frombuffer(handle.read(min(left, block) * dtype.itemsize), dtype=dtype)
                if data.size == 0:
                    break
                found += int(np.count_nonzero(~np.isfinite(data)))
                left -= data.size
            return found
    except (OSError, EOFError, zlib.error, ValueError):
        return 0


def count_nonfinite_voxels(image: sitk.Image, path=None) -> int:
    """How many voxels are NaN or +-inf (0 for integer pixel types).

    ITK reads NaN/inf in NIfTI files as 0; give the file's ``path`` to count what the file itself holds.
    """
    if path is not None and Path(path).is_file() and Path(path).name.lower().endswith((".nii", ".nii.gz")):
        return _count_nonfinite_in_nifti(Path(path))
    if image.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        return 0
    return int(np.count_nonzero(~np.isfinite(sitk.GetArrayViewFromImage(image))))


def _suffix(path: Path, suffixes=WRITE_SUFFIXES) -> Optional[str]:
    name = path.name.lower()
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    return None


def segmentation_metadata(image: sitk.Image, names: Optional[Dict[int, str]] = None) -> Dict[str, str]:
    """Minimal Slicer ``.seg.nrrd`` segment metadata for the non-zero label values of a label image."""
    values = np.unique(sitk.GetArrayViewFromImage(image))
    size = image.GetSize()
    extent = "0 %d 0 %d 0 %d" % (size[0] - 1, size[1] - 1, size[2] - 1)
    metadata = {}
    for number, value in enumerate(int(v) for v in values if v != 0):
        name = (names or {}).get(value, "Segment_%d" % value)
        prefix = "Segment%d_" % number
        metadata.update({
            prefix + "ID": "Segment_%d" % value,
            prefix + "Name": name,
            prefix + "LabelValue": str(value),
            prefix + "Layer": "0",
            prefix + "Extent": extent,
        })
    return metadata


def write_image_atomic(image: sitk.Image, path, compress: bool = True,
                       segment_names: Optional[Dict[int, str]] = None, suffixes=WRITE_SUFFIXES) -> Path:
    """Write ``image`` to ``path`` (.nii.gz, .nii, .nrrd, .seg.nrrd or .mha) without ever leaving a partial file.

    The image is written to a temporary file in the destination folder and moved into place with os.replace, so
    an existing file is replaced only by a complete new one. For ``.seg.nrrd`` minimal Slicer segment metadata is
    added (one segment per non-zero label; ``segment_names`` maps label value -> name). Raises SamMed3DError.
    """
    path = Path(path)
    suffix = _suffix(path, suffixes)
    if suffix is None:
        raise SamMed3DError("cannot write %s: use one of %s" % (path, ", ".join(suffixes)))
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise SamMed3DError("cannot write %s: folder %s does not exist" % (path, folder))
    if suffix == ".seg.nrrd" and not image.HasMetaDataKey("Segment0_ID"):
        image = sitk.Image(image)  # shallow copy: do not add metadata to the caller's image
        for key, value in segmentation_metadata(image, segment_names).items():
            image.SetMetaData(key, value)
    temp = ""
    try:
        with atomic_path(path, suffix) as temp_name:
            temp = temp_name
            sitk.WriteImage(image, temp_name, compress)
    except OSError as error:
        raise SamMed3DError("cannot write %s: %s" % (path, error.strerror or _first_line(error))) from None
    except RuntimeError as error:  # ITK names the temporary file: show the user's path instead
        message = _first_line(error)
        if temp:
            message = message.replace(temp, str(path)).replace(os.path.basename(temp), path.name)
        raise SamMed3DError("cannot write %s: %s" % (path, message)) from None
    return path
