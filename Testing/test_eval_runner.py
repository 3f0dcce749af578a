"""Whole-dataset evaluation on an nnU-Net folder built from the bundled CT, with a simple real predictor."""
import csv
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from sammed3d.errors import SamMed3DError
from sammed3d.evaluation.datasets import find_cases
from sammed3d.evaluation.runner import evaluate_dataset, prediction_path

LABELS = {"background": 0, "spleen": 1, "gallbladder": 4, "liver": 5, "aorta": 52}


def store_y_flipped(label):
    """The same physical label map, stored with the y axis reversed (as the shared DICOM case is)."""
    array = sitk.GetArrayFromImage(label)[:, ::-1, :]
    flipped = sitk.GetImageFromArray(np.ascontiguousarray(array))
    flipped.SetSpacing(label.GetSpacing())
    flipped.SetOrigin(label.TransformIndexToPhysicalPoint((0, label.GetSize()[1] - 1, 0)))
    direction = np.array(label.GetDirection()).reshape(3, 3)
    direction[:, 1] *= -1
    flipped.SetDirection(tuple(direction.ravel()))
    return flipped


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, ct_3mm_path):
    root = tmp_path_factory.mktemp("Dataset100_CT")
    image = sitk.ReadImage(str(ct_3mm_path))
    labels = sitk.ReadImage(str(ct_3mm_path.parent / "labels.nii.gz"))
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir()
    (root / "dataset.json").write_text(json.dumps({"labels": LABELS, "file_ending": ".nii.gz"}))
    sitk.WriteImage(image, str(root / "imagesTr" / "ct_a_0000.nii.gz"))
    sitk.WriteImage(labels, str(root / "labelsTr" / "ct_a.nii.gz"))
    crop = (slice(10, 110), slice(5, 95), slice(2, 28))
    sitk.WriteImage(image[crop], str(root / "imagesTr" / "ct_b_0000.nii.gz"))
    sitk.WriteImage(store_y_flipped(labels[crop]), str(root / "labelsTr" / "ct_b.nii.gz"))
    truth = {
        "ct_a": sitk.GetArrayFromImage(labels),
        "ct_b": sitk.GetArrayFromImage(labels[crop]),  # ground truth in ct_b's grid, by construction
    }
    return root, truth


class ThresholdBallPredictor(object):
    """Voxels within 12 mm of a positive click whose intensity is within 40 of the first click's, minus 6 mm
    balls around negative clicks. Counts how many objects it was asked to segment."""

    def __init__(self):
        self.objects = 0

    def __call__(self, image, case, label):
        self.objects += 1
        array = sitk.GetArrayFromImage(image).astype(float)
        grid = np.indices(array.shape, dtype=float)
        spacing = np.array(image.GetSpacing()[::-1])

        def near(index, radius_mm):
            return sum(((g - c) * s) ** 2 for g, c, s in zip(grid, index, spacing)) <= radius_mm ** 2

        def predict(clicks):
            level = array[clicks[0].index]
            window = np.abs(array - level) <= 40
            mask = np.zeros(array.shape, dtype=bool)
            for click in clicks:
                mask = mask | (near(click.index, 12) & window) if click.positive else mask & ~near(click.index, 6)
            return mask

        return predict


def read_rows(out):
    with open(str(out / "metrics.csv"), newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_every_case_label_and_click_count_is_scored_and_reproducible(dataset, tmp_path):
    root, truth = dataset
    cases = find_cases(root)
    assert [c.case_id for c in cases] == ["ct_a", "ct_b"]
    out = tmp_path / "out"
    predictor = ThresholdBallPredictor()
    summary = evaluate_dataset(cases, predictor, str(out), [1, 3], clicker="ritm", seed=7,
                               settings={"checkpoint": "test-predictor"}, progress=True)
    names = {v: n for n, v in LABELS.items() if v}
    expected = set()
    for case_id, array in truth.items():
        for value in names:
            if (array == value).any():
                expected |= {(case_id, str(value), names[value], str(n)) for n in (1, 3)}
    rows = read_rows(out)
    assert {(r["case"], r["label"], r["label_name"], r["clicks"]) for r in rows} == expected
    assert len(rows) == len(expected)
    assert predictor.objects == len(expected) // 2
    # the saved predictions (after the largest click count) re-score to the reported Dice
    for row in rows:
        if row["clicks"] != "3":
            continue
        saved = sitk.ReadImage(prediction_path(str(out), row["case"], int(row["label"])))
        pred = sitk.GetArrayFromImage(saved) > 0
        gt = truth[row["case"]] == int(row["label"])
        rescored = 2.0 * np.count_nonzero(pred & gt) / (np.count_nonzero(pred) + np.count_nonzero(gt))
        assert abs(rescored - float(row["dice"])) < 1e-3
        image = sitk.ReadImage(str(root / "imagesTr" / (row["case"] + "_0000.nii.gz")))
        np.testing.assert_allclose(saved.GetOrigin(), image.GetOrigin(), atol=1e-4)
        assert saved.GetSize() == image.GetSize()
    # the predictor is not trivial: more clicks cover more of the (large) liver in both cases
    for case_id in truth:
        liver = {r["clicks"]: float(r["dice"]) for r in rows if r["label_name"] == "liver" and r["case"] == case_id}
        assert 0 < liver["1"] < liver["3"]
    assert {(e["label_name"], e["clicks"]) for e in summary["per_label"]} == {(r[2], int(r[3])) for r in expected}
    assert json.loads((out / "summary.json").read_text())["settings"]["clicker"] == "ritm"
    assert (out / "dice_vs_clicks.png").stat().st_size > 5000

    # re-running skips finished rows entirely
    before = (out / "metrics.csv").read_bytes()
    again = ThresholdBallPredictor()
    evaluate_dataset(cases, again, str(out), [1, 3], clicker="ritm", seed=7,
                     settings={"checkpoint": "test-predictor"}, progress=False)
    assert again.objects == 0
    assert (out / "metrics.csv").read_bytes() == before

    # asking for more clicks adds rows; earlier rows stay as they were
    evaluate_dataset(cases, again, str(out), [1, 3, 5], clicker="ritm", seed=7,
                     settings={"checkpoint": "test-predictor"}, progress=False)
    rows5 = read_rows(out)
    assert rows5[: len(rows)] == rows and len(rows5) == len(rows) * 3 // 2

    # other settings are refused, and nothing is touched
    with pytest.raises(SamMed3DError, match="other settings"):
        evaluate_dataset(cases, again, str(out), [1, 3], clicker="random", seed=7,
                         settings={"checkpoint": "test-predictor"}, progress=False)
    assert read_rows(out) == rows5

    # results do not depend on case order (each object has its own seeded clicker)
    reordered = tmp_path / "reordered"
    evaluate_dataset(list(reversed(cases)), ThresholdBallPredictor(), str(reordered), [1, 3], clicker="ritm",
                     seed=7, settings={"checkpoint": "test-predictor"}, progress=False)
    key = lambda r: (r["case"], r["label"], r["clicks"])  # noqa: E731
    assert {key(r): r["dice"] for r in read_rows(reordered)} == {key(r): r["dice"] for r in rows}


def test_label_selection(dataset, tmp_path):
    root, truth = dataset
    cases = find_cases(root)
    out = tmp_path / "liver_only"
    evaluate_dataset(cases, ThresholdBallPredictor(), str(out), [2], labels=["liver", "52"], progress=False)
    assert sorted({(r["case"], r["label_name"]) for r in read_rows(out)}) == [
        ("ct_a", "aorta"), ("ct_a", "liver"), ("ct_b", "aorta"), ("ct_b", "liver")
    ]
    with pytest.raises(SamMed3DError, match="kidney"):
        evaluate_dataset(cases, ThresholdBallPredictor(), str(tmp_path / "x"), [1], labels=["kidney"],
                         progress=False)
    with pytest.raises(SamMed3DError, match="clicker"):
        evaluate_dataset(cases, ThresholdBallPredictor(), str(tmp_path / "y"), [1], clicker="smart",
                         progress=False)
    assert not os.path.exists(str(tmp_path / "x")) and not os.path.exists(str(tmp_path / "y"))
