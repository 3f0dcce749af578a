"""Click simulators: placement rules, the ritm depth criterion (vs scipy), determinism."""
import os
import subprocess
import sys

import numpy as np
import pytest

from sammed3d.errors import SamMed3DError
from sammed3d.evaluation.clicks import Click, RandomClicker, RitmClicker, derive_seed, make_clicker


def box(shape, start, stop):
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(a, b) for a, b in zip(start, stop))] = True
    return mask


def blob(seed, shape=(16, 18, 20)):
    rng = np.random.default_rng(seed)
    centre = rng.uniform(5, 11, size=3)
    radii = rng.uniform(2.5, 5, size=3)
    grid = np.indices(shape, dtype=float)
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0


@pytest.mark.parametrize("cls", [RandomClicker, RitmClicker])
def test_first_click_is_positive_inside_the_object(cls):
    for seed in range(10):
        gt = blob(seed)
        click = cls(seed).next_click(gt, np.zeros_like(gt))
        assert isinstance(click, Click)
        assert click.positive is True
        assert gt[click.index]
        assert all(isinstance(v, int) for v in click.index)


@pytest.mark.parametrize("cls", [RandomClicker, RitmClicker])
def test_no_click_when_prediction_is_exact(cls):
    gt = blob(1)
    assert cls(0).next_click(gt, gt.copy()) is None


@pytest.mark.parametrize("cls", [RandomClicker, RitmClicker])
def test_rejects_empty_object_and_shape_mismatch(cls):
    with pytest.raises(ValueError):
        cls(0).next_click(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool))
    with pytest.raises(ValueError):
        cls(0).next_click(np.ones((4, 4, 4), bool), np.zeros((4, 4, 5), bool))


def test_random_clicks_are_uniform_over_the_error_region():
    shape = (12, 12, 12)
    gt = box(shape, (2, 2, 2), (8, 8, 8))  # 216 voxels
    pred = box(shape, (2, 2, 3), (8, 8, 10))  # misses 36 (FN), adds 72 (FP)
    false_neg, false_pos = gt & ~pred, pred & ~gt
    clicker = RandomClicker(7)
    clicks = [clicker.next_click(gt, pred) for _ in range(1500)]
    for click in clicks:
        assert false_neg[click.index] or false_pos[click.index]
        assert click.positive == bool(false_neg[click.index])
    positive_share = np.mean([c.positive for c in clicks])
    assert positive_share == pytest.approx(36 / 108, abs=0.04)
    assert len(set(c.index for c in clicks)) > 90  # spread over (almost) all 108 error voxels


def ritm_candidates(region, spacing=None):
    """Reference: scipy EDT of the zero-padded region, voxels deeper than half the maximum."""
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(np.pad(region, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    return depth, depth > depth.max() / 2.0


def test_ritm_clicks_deep_inside_the_larger_error_region():
    shape = (20, 20, 20)
    gt = box(shape, (2, 2, 2), (14, 14, 14))
    pred = box(shape, (2, 2, 2), (14, 14, 6)) | box(shape, (15, 2, 2), (17, 14, 14))  # big FN, thin FP slab
    fn_depth, candidates = ritm_candidates(gt & ~pred)
    clicker = RitmClicker(3)
    clicks = [clicker.next_click(gt, pred) for _ in range(80)]
    assert all(c.positive for c in clicks)
    assert all(candidates[c.index] for c in clicks)
    assert len(set(c.index for c in clicks)) > 20


def test_ritm_negative_click_when_false_positives_are_deeper():
    shape = (20, 20, 20)
    gt = box(shape, (2, 2, 2), (8, 8, 8))
    pred = gt.copy()
    pred[2, 2, 2] = False  # a single false-negative voxel
    pred |= box(shape, (10, 10, 10), (18, 18, 18))  # a deep false-positive cube
    _, candidates = ritm_candidates(pred & ~gt)
    for seed in range(20):
        click = RitmClicker(seed).next_click(gt, pred)
        assert click.positive is False
        assert candidates[click.index]


def test_ritm_tie_goes_to_false_positives():
    shape = (12, 12, 12)
    gt = box(shape, (1, 1, 1), (4, 4, 4))  # missed entirely: FN depth 2
    pred = box(shape, (7, 7, 7), (10, 10, 10))  # same shape elsewhere: FP depth 2
    for seed in range(5):
        click = RitmClicker(seed).next_click(gt, pred)
        assert click.positive is False
        assert click.index == (8, 8, 8)  # the only voxel deeper than half the maximum


def test_ritm_treats_the_array_border_as_outside():
    shape = (12, 12, 12)
    gt = box(shape, (0, 0, 0), (6, 12, 12))  # an object filling the array across two axes
    pred = np.zeros_like(gt)
    depth, candidates = ritm_candidates(gt)
    assert depth.max() == 3.0
    for seed in range(30):
        index = RitmClicker(seed).next_click(gt, pred).index
        assert candidates[index]
        assert 0 < min(index) and max(index[1:]) < 11 and index[0] < 5


def test_ritm_uses_voxel_spacing():
    shape = (24, 24, 24)
    gt = box(shape, (2, 2, 2), (5, 11, 11))  # FN 3x9x9: depth 2 voxels, but 5 mm in-plane at 5 mm slices
    pred = box(shape, (10, 10, 10), (15, 15, 15))  # FP 5x5x5: depth 3 voxels, 3 mm in-plane
    gt_first = gt | box(shape, (2, 2, 2), (3, 3, 3))
    assert RitmClicker(0).next_click(gt_first, pred).positive is False
    click = RitmClicker(0).next_click(gt_first, pred, spacing_zyx=(5.0, 1.0, 1.0))
    assert click.positive is True
    _, candidates = ritm_candidates(gt_first & ~pred, spacing=(5.0, 1.0, 1.0))
    assert candidates[click.index]


@pytest.mark.parametrize("name", ["random", "ritm"])
def test_clickers_are_deterministic_given_a_seed(name):
    gt = blob(4)
    pred = np.roll(gt, 2, axis=1)

    def sequence(seed):
        clicker = make_clicker(name, seed)
        return [clicker.next_click(gt, pred) for _ in range(8)]

    assert sequence(11) == sequence(11)
    assert sequence(11) != sequence(12)


def test_make_clicker_and_derived_seeds():
    assert isinstance(make_clicker("random", 1), RandomClicker)
    assert isinstance(make_clicker("ritm", 1, "case_01", 5), RitmClicker)
    assert make_clicker("ritm", 1, "case_01", 5).seed == derive_seed(1, "case_01", 5)
    assert derive_seed(1, "case_01", 5) != derive_seed(1, "case_01", 6)
    assert derive_seed(1, "case_01", 5) != derive_seed(2, "case_01", 5)
    with pytest.raises(SamMed3DError, match="unknown clicker"):
        make_clicker("smart", 0)


def test_derived_seed_does_not_depend_on_python_hash_randomisation():
    code = "from sammed3d.evaluation.clicks import derive_seed; print(derive_seed(3, 'liver_7', 5))"
    module_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "SAMMed3DSlicer")
    outputs = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=module_dir)
        outputs.add(subprocess.check_output([sys.executable, "-c", code], env=env).strip())
    assert outputs == {str(derive_seed(3, "liver_7", 5)).encode()}
