"""read_image / validate_image / write_image_atomic: formats, DICOM folders, one-line errors, atomic writes."""
import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from sammed3d import image_io
from sammed3d.errors import InputImageError, SamMed3DError
from sammed3d.image_io import read_image, validate_image, write_image_atomic


def one_line_error(error_type, function, *args):
    with pytest.raises(error_type) as info:
        function(*args)
    message = str(info.value)
    assert message and "\n" not in message and len(message) < 300, message
    return message


def small_image(pixel_type=sitk.sitkInt16, size=(6, 5, 4)):
    image = sitk.Cast(sitk.GetImageFromArray(np.arange(np.prod(size)).reshape(size[::-1]) % 100), pixel_type)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((1.0, -2.0, 3.0))
    image.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    return image


def assert_same_image(a, b):
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))


def test_reads_bundled_nifti(ct_3mm_path):
    image = read_image(ct_3mm_path)
    assert image.GetSize() == (122, 101, 30)
    assert image.GetPixelID() == sitk.sitkInt16  # stored type kept


def test_reads_dicom_series_folder(shared_data):
    image = read_image(shared_data / "ct_abdomen_dicom" / "dicom")
    assert image.GetSize() == (512, 512, 20)
    np.testing.assert_allclose(image.GetSpacing(), (0.9765625, 0.9765625, 2.0))
    # Slices are sorted along the normal: z increases with k by the slice spacing.
    z = [image.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(20)]
    np.testing.assert_allclose(np.diff(z), 2.0)


def test_dicom_folder_picks_the_largest_series(shared_data, tmp_path):
    source = shared_data / "ct_abdomen_dicom" / "dicom"
    for name in sorted(os.listdir(source)):
        shutil.copy(source / name, tmp_path / name)
    # A second, smaller series: one 2D DICOM written by SimpleITK with its own series UID.
    other = sitk.Image([8, 8], sitk.sitkInt16)
    other.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.999")
    other.SetMetaData("0008|0060", "CT")
    sitk.WriteImage(other, str(tmp_path / "other.dcm"))
    assert read_image(tmp_path).GetSize() == (512, 512, 20)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_write_read_round_trip(tmp_path, suffix):
    image = small_image()
    path = write_image_atomic(image, tmp_path / ("out" + suffix))
    assert_same_image(read_image(path), image)
    assert (path.stat().st_mode & 0o777) == 0o644
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left behind


def test_seg_nrrd_gets_segment_metadata(tmp_path):
    mask = sitk.Cast(small_image() > 50, sitk.sitkUInt8)
    path = write_image_atomic(mask, tmp_path / "mask.seg.nrrd", segment_names={1: "liver"})
    written = sitk.ReadImage(str(path))
    assert written.GetMetaData("Segment0_Name") == "liver"
    assert written.GetMetaData("Segment0_LabelValue") == "1"
    assert not mask.HasMetaDataKey("Segment0_ID")  # the caller's image is untouched
    assert_same_image(written, mask)


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "result.nii.gz"
    write_image_atomic(small_image(), path)
    before = path.read_bytes()

    def crash(image, name, *args):
        with open(name, "wb") as handle:
            handle.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(image_io.sitk, "WriteImage", crash)
    message = one_line_error(SamMed3DError, write_image_atomic, small_image(sitk.sitkFloat32), path)
    assert "disk full" in message
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]


def test_write_rejects_bad_targets(tmp_path):
    one_line_error(SamMed3DError, write_image_atomic, small_image(), tmp_path / "out.png")
    one_line_error(SamMed3DError, write_image_atomic, small_image(), tmp_path / "missing" / "out.nii.gz")


def test_missing_file_and_folders(tmp_path):
    assert "not found" in one_line_error(InputImageError, read_image, tmp_path / "nope.nii.gz")
    assert "no DICOM" in one_line_error(InputImageError, read_image, tmp_path)
    (tmp_path / "notes.txt").write_text("not dicom")
    one_line_error(InputImageError, read_image, tmp_path)


def test_corrupt_files(tmp_path, ct_3mm_path):
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(os.urandom(2000))
    one_line_error(InputImageError, read_image, garbage)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(ct_3mm_path.read_bytes()[:20000])
    one_line_error(InputImageError, read_image, truncated)
    for suffix, compress in ((".nii", False), (".nrrd", True), (".mha", False)):
        complete = tmp_path / ("complete" + suffix)
        sitk.WriteImage(read_image(ct_3mm_path), str(complete), compress)
        cut = tmp_path / ("cut" + suffix)
        cut.write_bytes(complete.read_bytes()[:-5000])
        one_line_error(InputImageError, read_image, cut)
    empty = tmp_path / "empty.nrrd"
    empty.write_bytes(b"")
    one_line_error(InputImageError, read_image, empty)


def test_wrong_dimensions_and_components(tmp_path):
    cases = {
        "2d.nii.gz": sitk.Image([16, 16], sitk.sitkInt16),
        "single_slice.nii.gz": sitk.Image([16, 16, 1], sitk.sitkInt16),
        "4d.nii.gz": sitk.Image([8, 8, 8, 3], sitk.sitkFloat32),
        "vector.nrrd": sitk.Image([8, 8, 8], sitk.sitkVectorFloat32, 3),
        "rgb.mha": sitk.Image([8, 8, 8], sitk.sitkVectorUInt8, 3),
    }
    for name, image in cases.items():
        path = tmp_path / name
        sitk.WriteImage(image, str(path))
        message = one_line_error(InputImageError, read_image, path)
        assert name in message


def test_validate_image_checks_geometry_and_type():
    one_line_error(InputImageError, validate_image, np.zeros((4, 4, 4)))
    one_line_error(InputImageError, validate_image, sitk.Image([4, 4, 4], sitk.sitkComplexFloat32))
    nearly_singular = sitk.Image([4, 4, 4], sitk.sitkInt16)
    nearly_singular.SetDirection((1, 0, 0, 1, 1e-9, 0, 0, 0, 1))
    one_line_error(InputImageError, validate_image, nearly_singular)
    image = small_image(sitk.sitkFloat64)
    assert validate_image(image) is image
