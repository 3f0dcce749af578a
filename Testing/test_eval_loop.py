"""The click loop with real (simple, deterministic) predictors, and index -> RAS conversion."""
import numpy as np
import pytest
import SimpleITK as sitk

from sammed3d.errors import SamMed3DError
from sammed3d.evaluation.clicks import RandomClicker, RitmClicker
from sammed3d.evaluation.loop import (
    click_to_ras,
    evaluate_case,
    image_spacing_zyx,
    index_to_ras,
    validate_click_counts,
)
from sammed3d.evaluation.metrics import dice

SHAPE = (20, 24, 28)


def ball(centre, radius, shape=SHAPE):
    grid = np.indices(shape, dtype=float)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


class BallPredictor(object):
    """Balls of radius 4 added around positive clicks and carved out around negative ones; records its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, clicks):
        self.calls.append(list(clicks))
        mask = np.zeros(SHAPE, dtype=bool)
        for click in clicks:
            region = ball(click.index, 4)
            mask = mask | region if click.positive else mask & ~region
        return mask


def make_image(shape=SHAPE, spacing=(1.0, 1.0, 1.0)):
    image = sitk.Image(shape[2], shape[1], shape[0], sitk.sitkInt16)
    image.SetSpacing(spacing)
    return image


@pytest.mark.parametrize("clicker_cls", [RandomClicker, RitmClicker])
def test_loop_feeds_growing_click_lists_and_keeps_requested_counts(clicker_cls):
    gt = ball((10, 12, 10), 5) | ball((10, 12, 19), 4)  # two lobes: one ball prediction cannot cover both
    predictor = BallPredictor()
    results = evaluate_case(predictor, make_image(), gt, clicker_cls(5), [5, 1, 3, 3])
    assert [r.clicks for r in results] == [1, 3, 5]
    assert [len(call) for call in predictor.calls] == [1, 2, 3, 4, 5]
    for a, b in zip(predictor.calls, predictor.calls[1:]):
        assert b[:-1] == a  # each call appends exactly one click
    first = predictor.calls[0][0]
    assert first.positive and gt[first.index]
    for result in results:
        assert result.history == predictor.calls[-1][: result.clicks]
        np.testing.assert_array_equal(result.mask, BallPredictor()(result.history))
    assert results[0].seconds <= results[1].seconds <= results[2].seconds
    # every later click corrects an error of the mask before it
    for n, click in enumerate(predictor.calls[-1][1:], start=1):
        previous = BallPredictor()(predictor.calls[-1][:n])
        assert previous[click.index] != gt[click.index]
        assert click.positive == bool(gt[click.index])
    assert dice(gt, results[-1].mask) > dice(gt, np.zeros_like(gt))


def test_loop_stops_when_the_prediction_is_exact():
    image_array = np.zeros(SHAPE, np.int16)
    gt = ball((10, 12, 14), 6)
    image_array[gt] = 100
    image = sitk.GetImageFromArray(image_array)
    calls = []

    def region_growing(clicks):
        calls.append(len(clicks))
        seeds = [tuple(int(v) for v in reversed(c.index)) for c in clicks if c.positive]
        grown = sitk.ConnectedThreshold(image, seedList=seeds, lower=50, upper=150)
        return sitk.GetArrayFromImage(grown) > 0

    results = evaluate_case(region_growing, image, gt, RandomClicker(0), [1, 2, 5])
    assert calls == [1]
    assert [r.clicks for r in results] == [1, 2, 5]
    assert all(len(r.history) == 1 and dice(gt, r.mask) == 1.0 for r in results)
    assert results[0].seconds == results[2].seconds


def test_loop_rejects_bad_inputs():
    gt = ball((10, 12, 14), 3)
    with pytest.raises(ValueError, match="shape"):
        evaluate_case(BallPredictor(), make_image((20, 24, 29)), gt, RandomClicker(0), [1])
    with pytest.raises(ValueError, match="predict_fn"):
        evaluate_case(lambda clicks: np.zeros((2, 2, 2), bool), make_image(), gt, RandomClicker(0), [1])
    for counts in ([], [0, 1], ["x"], None):
        with pytest.raises(SamMed3DError):
            validate_click_counts(counts)
    assert validate_click_counts(["10", 1, 5, 5]) == [1, 5, 10]


def test_loop_passes_the_image_spacing_to_the_clicker():
    seen = []

    class Recorder(RandomClicker):
        def next_click(self, gt, pred, spacing_zyx=None):
            seen.append(spacing_zyx)
            return super(Recorder, self).next_click(gt, pred, spacing_zyx)

    image = make_image(spacing=(0.7, 0.8, 3.0))
    gt = ball((10, 12, 14), 3)
    evaluate_case(BallPredictor(), image, gt, Recorder(0), [2])
    assert seen[0] == (3.0, 0.8, 0.7) == image_spacing_zyx(image)
    seen[:] = []
    evaluate_case(BallPredictor(), image, gt, Recorder(0), [1], use_spacing=False)
    assert seen == [None]


def test_index_to_ras_hand_computed():
    image = sitk.Image(8, 8, 8, sitk.sitkInt16)
    image.SetOrigin((10.0, 20.0, 30.0))
    image.SetSpacing((2.0, 3.0, 4.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    # numpy index (k, j, i) = (1, 2, 3): LPS = (10 - 3*2, 20 - 2*3, 30 + 1*4) = (4, 14, 34) -> RAS (-4, -14, 34)
    np.testing.assert_allclose(index_to_ras(image, (1, 2, 3)), [-4.0, -14.0, 34.0])
    from sammed3d.evaluation.clicks import Click

    point, positive = click_to_ras(image, Click((0, 0, 0), False))
    np.testing.assert_allclose(point, [-10.0, -20.0, 30.0])
    assert positive is False
