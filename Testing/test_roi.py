"""extract_roi against a torchio re-creation of the official preprocessing, and its edge cases."""

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sammed3d import extract_roi, geometry
from sammed3d.errors import InputImageError, PromptError
from sammed3d.image_io import read_image
from sammed3d.roi import official_grid

from torchio_oracle import official_roi, overlap_correlation, sitk_image_from_array
from test_geometry import clear_orientation, directions


def assert_matches_official(image, center_ras, radius_mm=6.0, near_edge=False):
    roi = extract_roi(image, center_ras)
    theirs, their_affine, (grid_shape, grid_affine) = official_roi(image, center_ras, radius_mm)
    assert roi.image.shape == (1, 1, 128, 128, 128) and roi.image.dtype.is_floating_point
    assert not roi.image.isnan().any()
    # The whole-image 1.5 mm grid, and the ROI's axes and spacing, are the official ones.
    assert roi.grid.size == grid_shape
    np.testing.assert_allclose(roi.grid.affine, grid_affine, atol=1e-4)
    np.testing.assert_allclose(roi.affine[:3, :3], their_affine[:3, :3], atol=1e-6)
    # Centres (voxel 64) within 1.5 voxels; the lattice phase is identical (checked by overlap_correlation).
    # Near the image edge the oracle's target sphere is truncated, which moves its centre: compare per axis there.
    centre_shift = roi.ras_to_index(geometry.apply_affine(their_affine, [64, 64, 64])) - 64
    assert (np.max(np.abs(centre_shift)) if near_edge else np.linalg.norm(centre_shift)) <= 1.5
    correlation, shift = overlap_correlation(roi.image[0, 0].numpy(), roi.affine, theirs, their_affine)
    assert correlation >= 0.98, (correlation, shift)
    # The click itself is within a voxel of the ROI centre.
    assert np.all(np.abs(roi.ras_to_index(center_ras) - 64) <= 0.5 + 1e-9)
    return roi, correlation, shift


def mr_like(size, spacing, direction, origin=(10.0, -20.0, 30.0), seed=0):
    """A smooth positive 'MR' (ellipsoid of tissue, air = 0) on an arbitrary grid, float32."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in size], indexing="ij"))
    radius = np.sqrt(((grid / np.array([0.9, 0.8, 0.95])[:, None, None, None]) ** 2).sum(0))
    tissue = 300 + 120 * np.sin(4 * grid[0]) * np.cos(3 * grid[1] + grid[2]) + 60 * grid[2]
    array = np.where(radius < 1, tissue, 0.0) + rng.normal(0, 5, size).clip(0, None)
    return sitk_image_from_array(array, spacing, origin, direction)


def test_bundled_ct_matches_official(ct_3mm_path):
    image = read_image(ct_3mm_path)
    size = np.array(image.GetSize())
    for fraction in ([0.5, 0.5, 0.5], [0.3, 0.6, 0.4], [0.05, 0.9, 0.1]):  # the last one needs padding
        click = geometry.index_to_ras(image, (size - 1) * np.array(fraction))
        roi, correlation, _ = assert_matches_official(image, click, near_edge=fraction[0] < 0.1)
        assert correlation > 0.999


@pytest.mark.slow
def test_dicom_series_matches_official(shared_data):
    image = read_image(shared_data / "ct_abdomen_dicom" / "dicom")
    assert image.GetSize() == (512, 512, 20)
    click = geometry.index_to_ras(image, [300.0, 200.0, 9.0])
    roi, correlation, _ = assert_matches_official(image, click)
    assert correlation > 0.999
    # LPS-stored DICOM: the ROI's first axis runs toward R, i.e. against the image's i axis.
    assert roi.affine[0, 0] > 0 and geometry.image_affine_ras(image)[0, 0] < 0


def test_oblique_anisotropic_mr_matches_official():
    tilt = np.radians(17.0)
    rotation = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    sagittal = np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], dtype=float)  # i -> A, j -> I, k -> L (RAS terms)
    direction_lps = geometry.LPS_TO_RAS @ rotation @ sagittal
    image = mr_like((70, 64, 22), (0.9, 1.1, 3.6), direction_lps)
    click = geometry.index_to_ras(image, [30.0, 40.0, 12.0])
    roi, correlation, _ = assert_matches_official(image, click)
    assert correlation > 0.999
    # Oblique stays oblique (as torchio ToCanonical), axes sorted toward R, A, S.
    axes = roi.affine[:3, :3] / 1.5
    assert np.all(np.argmax(np.abs(axes), axis=0) == [0, 1, 2]) and np.all(np.diag(axes) > 0.9)
    assert not np.allclose(axes, np.eye(3), atol=0.1)


@settings(max_examples=10, deadline=None)
@given(st.tuples(*[st.integers(16, 40)] * 3), st.tuples(*[st.floats(0.7, 3.5)] * 3), directions(),
       st.tuples(*[st.floats(0.3, 0.7)] * 3))
def test_random_geometry_matches_official(size, spacing, direction, fraction):
    assume(clear_orientation(direction))
    image = mr_like(size, spacing, direction, seed=1)
    # The small offset keeps the click off exact ties between two grid voxels (decided by rounding noise).
    click = geometry.index_to_ras(image, (np.array(size) - 1) * np.array(fraction) + 0.0137)
    # One-voxel target: the official ROI must then be exactly ours (same voxel 64).
    roi, _, shift = assert_matches_official(image, click, radius_mm=None)
    assert list(shift) == [0, 0, 0]


def test_official_grid_keeps_field_of_view_centre(ct_3mm_path):
    image = read_image(ct_3mm_path)
    grid = official_grid(image)
    assert grid.size == (244, 202, 60)  # floor(size * 3 / 1.5)
    centre = geometry.apply_affine(grid.affine, (np.array(grid.size) - 1) / 2)
    np.testing.assert_allclose(centre, geometry.index_to_ras(image, (np.array(image.GetSize()) - 1) / 2), atol=1e-9)


def test_roi_point_helpers_round_trip(ct_3mm_path):
    image = read_image(ct_3mm_path)
    click = geometry.index_to_ras(image, [60.0, 50.0, 15.0])
    roi = extract_roi(image, click)
    indices = np.array([[0, 0, 0], [127, 127, 127], [64.25, 10.5, 99.0]])
    np.testing.assert_allclose(roi.ras_to_index(roi.index_to_ras(indices)), indices, atol=1e-9)
    assert list(roi.contains(roi.index_to_ras([[-0.4, 0, 0], [0, 127.6, 0], [64, 64, 64]]))) == [True, False, True]
    assert roi.size == 128 and roi.spacing == pytest.approx(1.5)
    # The ROI's sampled intensities equal the image's at the same physical points (checked at one voxel).
    voxel = np.array([70, 64, 50])
    source_index = geometry.ras_to_index(image, roi.index_to_ras(voxel))
    expected = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), [1, 1, 1], sitk.Transform(), sitk.sitkLinear,
                             geometry.index_to_lps(image, source_index), [1, 1, 1], [1, 0, 0, 0, 1, 0, 0, 0, 1])
    assert roi.raw[tuple(voxel)] == pytest.approx(sitk.GetArrayFromImage(expected).item(), abs=1e-3)
    # Normalisation is (raw - mean) / std with the statistics of voxels > 0.
    positive = roi.raw[roi.raw > 0]
    assert roi.mean == pytest.approx(positive.mean(), rel=1e-5)
    assert roi.std == pytest.approx(positive.std(ddof=1), rel=1e-5)


def test_padding_is_zero_beyond_the_image(ct_3mm_path):
    image = read_image(ct_3mm_path)
    roi = extract_roi(image, geometry.index_to_ras(image, [1.0, 1.0, 1.0]))
    lo, hi = roi.valid_box
    assert np.all(lo > 0)
    assert not roi.valid[0, 0, 0] and roi.valid[127, 127, 100] and not roi.valid[127, 127, 127]
    assert np.all(roi.raw[~roi.valid] == 0)


def test_points_outside_or_not_finite_are_rejected(ct_3mm_path):
    image = read_image(ct_3mm_path)
    far = geometry.index_to_ras(image, [-5.0, 10.0, 10.0])
    with pytest.raises(PromptError, match="outside the image"):
        extract_roi(image, far)
    with pytest.raises(PromptError):
        extract_roi(image, [np.nan, 0, 0])
    with pytest.raises(PromptError):
        extract_roi(image, [1.0, 2.0])


def test_2d_and_vector_images_are_rejected():
    with pytest.raises(InputImageError):
        extract_roi(sitk.Image([10, 10], sitk.sitkFloat32), [0, 0, 0])
    with pytest.raises(InputImageError):
        extract_roi(sitk.Image([10, 10, 10], sitk.sitkVectorFloat32, 3), [0, 0, 0])


@pytest.mark.parametrize("value", [0.0, 7.0, -1000.0])
def test_constant_images_give_finite_zero_roi(value):
    image = sitk_image_from_array(np.full((20, 20, 10), value), (2, 2, 4), (0, 0, 0), np.eye(3))
    roi = extract_roi(image, geometry.index_to_ras(image, [10, 10, 5]))
    array = roi.image.numpy()
    assert np.all(np.isfinite(array))
    assert np.all(array[0, 0][roi.valid] == array[0, 0, 64, 64, 64])


def test_non_finite_voxels_are_treated_as_zero():
    rng = np.random.default_rng(3)
    array = rng.uniform(1, 100, (30, 30, 12))
    dirty = array.copy()
    dirty[5:9, 5:9, 2:4] = np.nan
    dirty[20, 20, 6] = np.inf
    dirty[22, 3, 1] = -np.inf
    clean = np.nan_to_num(dirty, nan=0.0, posinf=0.0, neginf=0.0)
    args = ((1.0, 1.2, 3.0), (5, 6, 7), np.eye(3))
    click = geometry.index_to_ras(sitk_image_from_array(clean, *args), [15, 15, 6])
    roi_dirty = extract_roi(sitk_image_from_array(dirty, *args), click)
    roi_clean = extract_roi(sitk_image_from_array(clean, *args), click)
    assert np.all(np.isfinite(roi_dirty.image.numpy()))
    np.testing.assert_allclose(roi_dirty.image.numpy(), roi_clean.image.numpy(), atol=1e-5)
