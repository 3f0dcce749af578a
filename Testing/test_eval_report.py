"""metrics.csv resume, summary.json, the plot and prediction files."""
import csv
import json
import os
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from sammed3d.errors import SamMed3DError
from sammed3d.evaluation.report import (
    FIELDS,
    MetricsCsv,
    plot_dice_vs_clicks,
    summarize,
    write_prediction,
    write_summary,
)


def fill(table):
    table.append("c1", 1, "liver", 1, 0.5, 0.4, 1.25)
    table.append("c1", 1, "liver", 3, 0.7, 0.6, 2.5)
    table.append("c1", 2, "spleen", 1, 0.9, 0.8, 1.0)
    table.append("c2", 1, "liver", 1, 0.3, 0.2, 1.5)


def test_metrics_csv_writes_header_and_resumes(tmp_path):
    path = str(tmp_path / "out" / "metrics.csv")
    table = MetricsCsv(path)
    assert table.rows == [] and not table.is_done("c1", 1, 1)
    fill(table)
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == FIELDS
    assert rows[1] == ["c1", "1", "liver", "1", "0.5", "0.4", "1.25"]
    reopened = MetricsCsv(path)
    assert reopened.rows == table.rows
    assert reopened.is_done("c1", 2, 1) and reopened.is_done("c2", "1", "1")
    assert not reopened.is_done("c2", 1, 3)
    with pytest.raises(ValueError, match="already"):
        reopened.append("c1", 1, "liver", 1, 0.5, 0.4, 1.0)
    reopened.append("c2", 1, "liver", 3, 0.35, 0.25, 3.0)
    assert len(MetricsCsv(path).rows) == 5


def test_metrics_csv_drops_a_torn_last_line(tmp_path):
    path = str(tmp_path / "metrics.csv")
    fill(MetricsCsv(path))
    with open(path, "a") as handle:
        handle.write("c2,1,liver,3,0.4")  # interrupted mid-row
    table = MetricsCsv(path)
    assert len(table.rows) == 4 and not table.is_done("c2", 1, 3)
    table.append("c2", 1, "liver", 3, 0.4, 0.3, 2.0)
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 6 and rows[-1][:4] == ["c2", "1", "liver", "3"]
    assert len(MetricsCsv(path).rows) == 5


def test_metrics_csv_refuses_a_foreign_file(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(SamMed3DError, match="not a metrics table"):
        MetricsCsv(str(path))
    assert path.read_text() == "a,b,c\n1,2,3\n"  # untouched


def test_summary_means_per_label_and_overall(tmp_path):
    table = MetricsCsv(str(tmp_path / "metrics.csv"))
    fill(table)
    summary = summarize(table.rows)
    assert summary["n_rows"] == 4 and summary["n_cases"] == 2
    per = {(e["label_name"], e["clicks"]): e for e in summary["per_label"]}
    assert per[("liver", 1)]["dice"] == pytest.approx(0.4) and per[("liver", 1)]["n"] == 2
    assert per[("liver", 1)]["nsd"] == pytest.approx(0.3)
    assert per[("spleen", 1)]["dice"] == pytest.approx(0.9)
    assert per[("liver", 3)]["dice"] == pytest.approx(0.7)
    overall = {e["clicks"]: e for e in summary["overall"]}
    assert overall[1]["dice"] == pytest.approx((0.5 + 0.9 + 0.3) / 3)
    assert overall[1]["dice_label_mean"] == pytest.approx((0.4 + 0.9) / 2)
    assert overall[3]["n"] == 1 and overall[3]["n_labels"] == 1
    written = write_summary(table.rows, str(tmp_path / "summary.json"), extra={"settings": {"seed": 3}})
    loaded = json.loads((tmp_path / "summary.json").read_text())
    assert loaded == json.loads(json.dumps(written))
    assert loaded["settings"] == {"seed": 3}
    assert not [name for name in os.listdir(str(tmp_path)) if name.startswith(".tmp-")]


def test_plot_is_written(tmp_path):
    table = MetricsCsv(str(tmp_path / "metrics.csv"))
    fill(table)
    path = str(tmp_path / "dice_vs_clicks.png")
    assert plot_dice_vs_clicks(summarize(table.rows), path) is True
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > 5000


def test_plot_is_skipped_with_a_warning_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    path = str(tmp_path / "plot.png")
    with pytest.warns(UserWarning, match="matplotlib"):
        assert plot_dice_vs_clicks(summarize([]), path) is False
    assert not os.path.exists(path)


def test_write_prediction_keeps_the_image_geometry(tmp_path):
    image = sitk.Image(6, 5, 4, sitk.sitkInt16)
    image.SetSpacing((0.8, 0.9, 2.5))
    image.SetOrigin((10.0, -20.0, 5.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    mask = np.random.default_rng(0).random((4, 5, 6)) > 0.5
    path = str(tmp_path / "predictions" / "case" / "5.nii.gz")
    write_prediction(mask, image, path)
    saved = sitk.ReadImage(path)
    assert saved.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_allclose(saved.GetSpacing(), image.GetSpacing())
    np.testing.assert_allclose(saved.GetOrigin(), image.GetOrigin())
    np.testing.assert_allclose(saved.GetDirection(), image.GetDirection())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(saved), mask.astype(np.uint8))
    assert os.listdir(os.path.dirname(path)) == ["5.nii.gz"]
    with pytest.raises(ValueError):
        write_prediction(mask[:, :, :5], image, path)
