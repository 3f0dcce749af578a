"""Coordinate conventions: RAS <-> LPS, index <-> physical, canonical axes, with oblique and anisotropic grids."""
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sammed3d import geometry

from torchio_oracle import ras_affine

finite = st.floats(-500, 500, allow_nan=False)
points = st.lists(st.tuples(finite, finite, finite), min_size=1, max_size=6).map(np.array)
spacings = st.tuples(*[st.floats(0.2, 6.0)] * 3)
origins = st.tuples(finite, finite, finite)


@st.composite
def directions(draw):
    """A random proper or improper rotation (oblique directions of any handedness)."""
    quaternion = np.array(draw(st.tuples(*[st.floats(-1, 1, allow_subnormal=False)] * 4)))
    if np.linalg.norm(quaternion) < 0.1:
        quaternion = np.array([1.0, 0, 0, 0])
    w, x, y, z = quaternion / np.linalg.norm(quaternion)
    rotation = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    flips = np.diag([draw(st.sampled_from([-1.0, 1.0])) for _ in range(3)])
    permutation = np.eye(3)[list(draw(st.permutations([0, 1, 2])))]
    direction = rotation @ permutation @ flips
    direction[np.abs(direction) < 1e-12] = 0.0  # no subnormal noise (ITK's SVD rejects it)
    return direction


def clear_orientation(direction):
    """False for (near) ties in the closest-canonical assignment, decided by rounding noise in nibabel's SVD."""
    magnitudes = np.abs(direction)
    within_columns = np.diff(np.sort(magnitudes, axis=0), axis=0)
    between_columns = np.diff(np.sort(magnitudes.max(axis=0)))
    return bool(np.all(within_columns > 1e-6) and np.all(between_columns > 1e-6))


def make_image(spacing, origin, direction, size=(7, 5, 4)):
    image = sitk.Image(list(size), sitk.sitkInt16)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(tuple(np.asarray(direction).ravel()))
    return image


def test_ras_lps_convention():
    np.testing.assert_array_equal(geometry.ras_to_lps([1.0, 2.0, 3.0]), [-1.0, -2.0, 3.0])
    np.testing.assert_array_equal(geometry.lps_to_ras([[1.0, 2.0, 3.0]]), [[-1.0, -2.0, 3.0]])
    with pytest.raises(ValueError):
        geometry.ras_to_lps([1.0, 2.0])


@given(points)
def test_ras_lps_round_trip(p):
    np.testing.assert_allclose(geometry.lps_to_ras(geometry.ras_to_lps(p)), p)


@settings(max_examples=60, deadline=None)
@given(spacings, origins, directions(), points)
def test_index_physical_matches_simpleitk(spacing, origin, direction, indices):
    image = make_image(spacing, origin, direction)
    expected = np.array([image.TransformContinuousIndexToPhysicalPoint(tuple(map(float, p))) for p in indices])
    np.testing.assert_allclose(geometry.index_to_lps(image, indices), expected, atol=1e-6)
    np.testing.assert_allclose(geometry.lps_to_index(image, expected), indices, atol=1e-6)
    ras = geometry.index_to_ras(image, indices)
    np.testing.assert_allclose(ras, expected * [-1, -1, 1], atol=1e-6)
    np.testing.assert_allclose(geometry.ras_to_index(image, ras), indices, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(spacings, origins, directions())
def test_image_affine_matches_torchio(spacing, origin, direction):
    image = make_image(spacing, origin, direction)
    np.testing.assert_allclose(geometry.image_affine_ras(image), ras_affine(image), atol=1e-5)
    np.testing.assert_allclose(geometry.ras_affine_to_lps(geometry.image_affine_ras(image)),
                               geometry.image_affine_lps(image), atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(directions())
def test_closest_canonical_matches_nibabel(direction):
    # Exact ties (e.g. 45 degree obliques) are decided by rounding noise in nibabel's SVD: compare only clear cases.
    assume(clear_orientation(direction))
    ras_axis, sign = geometry.closest_canonical_axes(direction)
    affine = np.eye(4)
    affine[:3, :3] = direction
    expected = nib.orientations.io_orientation(affine)
    np.testing.assert_array_equal(ras_axis, expected[:, 0])
    np.testing.assert_array_equal(sign, expected[:, 1])
    canonical = geometry.canonical_direction_ras(direction)
    # Each canonical axis points into the positive half of its RAS axis and is one of the original axes.
    assert np.all(np.diag(canonical) > 0)
    np.testing.assert_allclose(np.sort(np.abs(canonical.T @ direction), axis=None)[-3:], [1, 1, 1], atol=1e-9)


def test_canonical_of_lps_and_sagittal():
    # DICOM default: index axes toward L, P, S in RAS terms -> flips of x and y.
    ras_axis, sign = geometry.closest_canonical_axes(geometry.LPS_TO_RAS @ np.eye(3))
    assert list(ras_axis) == [0, 1, 2] and list(sign) == [-1, -1, 1]
    # Sagittal acquisition: i toward A, j toward I (down), k toward L.
    sagittal = np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], dtype=float)
    ras_axis, sign = geometry.closest_canonical_axes(sagittal)
    assert list(ras_axis) == [1, 2, 0] and list(sign) == [1, -1, -1]


def test_inside_index_bounds():
    inside = geometry.inside_index_bounds([[-0.5, 0, 0], [-0.51, 0, 0], [3.5, 2, 1], [3.6, 2, 1]], (4, 3, 2))
    assert list(inside) == [True, False, True, False]
