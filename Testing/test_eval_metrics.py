"""Dice and NSD against hand-computed cases and an independent scipy reference."""
import numpy as np
import pytest

from sammed3d.evaluation.distance import bounding_box, distance_to_mask
from sammed3d.evaluation.metrics import dice, nsd, surface_voxels


def cube(shape, start, size):
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(s, s + size) for s in start)] = True
    return mask


def sphere(shape, centre, radius, spacing=(1.0, 1.0, 1.0)):
    grid = np.indices(shape, dtype=float)
    dist2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing))
    return dist2 <= radius ** 2


def test_dice_offset_cubes():
    a = cube((30, 30, 30), (5, 5, 5), 10)
    b = cube((30, 30, 30), (10, 5, 5), 10)  # overlap 5x10x10 = 500 of 1000 + 1000
    assert dice(a, b) == pytest.approx(0.5)
    c = cube((30, 30, 30), (8, 7, 5), 10)  # overlap 7x8x10 = 560
    assert dice(a, c) == pytest.approx(2 * 560 / 2000)
    assert dice(a, a) == 1.0
    assert dice(a, ~a) == 0.0


def test_dice_empty_cases():
    empty = np.zeros((4, 5, 6), dtype=bool)
    assert dice(empty, empty) == 1.0
    assert dice(empty, cube((4, 5, 6), (1, 1, 1), 2)) == 0.0
    with pytest.raises(ValueError):
        dice(empty, np.zeros((4, 5, 7), dtype=bool))


def test_surface_voxels_of_a_cube():
    a = cube((12, 12, 12), (2, 2, 2), 6)
    surface = surface_voxels(a)
    assert surface.sum() == 6 ** 3 - 4 ** 3
    assert not surface[3:7, 3:7, 3:7].any()
    # the array border counts as outside
    assert surface_voxels(np.ones((3, 3, 3), dtype=bool)).sum() == 26


def test_nsd_empty_cases():
    empty = np.zeros((8, 8, 8), dtype=bool)
    full = cube((8, 8, 8), (2, 2, 2), 3)
    assert nsd(empty, empty) == 1.0
    assert nsd(full, empty) == 0.0
    assert nsd(empty, full) == 0.0


def test_nsd_shift_within_and_beyond_tolerance():
    shape = (40, 40, 40)
    ball = sphere(shape, (20, 20, 20), 8)
    shifted = sphere(shape, (21, 20, 20), 8)
    assert nsd(ball, ball, (1, 1, 1), 0.0) == 1.0
    assert nsd(ball, shifted, (1, 1, 1), 1.0) == 1.0  # every surface voxel moves by at most one voxel
    assert nsd(ball, shifted, (1, 1, 1), 0.0) < 0.9
    far = sphere(shape, (20, 20, 30), 8)  # 10 voxels away
    assert nsd(ball, far, (1, 1, 1), 1.0) < 0.2


def test_nsd_uses_spacing():
    shape = (40, 40, 40)
    ball = sphere(shape, (20, 20, 20), 8)
    shifted = sphere(shape, (22, 20, 20), 8)  # 2 voxels along axis 0
    assert nsd(ball, shifted, (1.0, 1.0, 1.0), 2.0) == 1.0
    # with 3 mm slices along axis 0 the same shift is 6 mm: most of the caps fall outside a 2 mm tolerance
    assert nsd(ball, shifted, (3.0, 1.0, 1.0), 2.0) < 0.9
    assert nsd(ball, shifted, (3.0, 1.0, 1.0), 6.0) == 1.0


def test_nsd_matches_scipy_reference():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    spacing = (2.5, 0.8, 1.1)
    for trial in range(4):
        noise = ndimage.gaussian_filter(rng.standard_normal((20, 24, 22)), 2.0)
        gt = noise > 0.05
        pred = ndimage.binary_dilation(gt, iterations=trial % 2 + 1) ^ (rng.random(gt.shape) < 0.02)
        tolerance = [0.5, 1.0, 2.0, 3.0][trial]
        gt_edge = gt & ~ndimage.binary_erosion(gt, border_value=0)
        pred_edge = pred & ~ndimage.binary_erosion(pred, border_value=0)
        to_gt = ndimage.distance_transform_edt(~gt_edge, sampling=spacing)
        to_pred = ndimage.distance_transform_edt(~pred_edge, sampling=spacing)
        expected = ((to_pred[gt_edge] <= tolerance).sum() + (to_gt[pred_edge] <= tolerance).sum()) / float(
            gt_edge.sum() + pred_edge.sum()
        )
        assert nsd(gt, pred, spacing, tolerance) == pytest.approx(expected, abs=1e-9)


def test_distance_to_mask_matches_scipy_and_handles_empty():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    mask = rng.random((9, 11, 13)) < 0.03
    spacing = (2.0, 0.7, 1.3)
    expected = ndimage.distance_transform_edt(~mask, sampling=spacing)
    np.testing.assert_allclose(distance_to_mask(mask, spacing), expected, atol=1e-4)
    assert np.isinf(distance_to_mask(np.zeros((3, 3, 3), dtype=bool))).all()


def test_bounding_box():
    mask = np.zeros((10, 10, 10), dtype=bool)
    assert bounding_box(mask) is None
    mask[2, 3:5, 9] = True
    assert bounding_box(mask) == (slice(2, 3), slice(3, 5), slice(9, 10))
    assert bounding_box(mask, margin=2) == (slice(0, 5), slice(1, 7), slice(7, 10))


def test_nsd_hand_computed_cubes():
    # Two 4^3 cubes (56 surface voxels each) offset by 2 along axis 0. At tolerance 0 only shared surface voxels
    # count: in each of the two overlapping slices a ring of 12 -> (24 + 24) / (56 + 56).
    gt = cube((10, 8, 8), (1, 2, 2), 4)
    pred = cube((10, 8, 8), (3, 2, 2), 4)
    assert nsd(gt, pred, (1, 1, 1), 0.0) == pytest.approx(48 / 112)
    # at 2 voxels every surface voxel of one cube is within reach of the other's surface
    assert nsd(gt, pred, (1, 1, 1), 2.0) == 1.0
    # the same offset is 4 mm with 2 mm slices; at 3 mm tolerance the far faces (16 each) stay out
    assert nsd(gt, pred, (2.0, 1, 1), 3.0) == pytest.approx((112 - 32) / 112)
