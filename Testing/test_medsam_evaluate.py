"""`sammed3d evaluate --model medsam`: the box protocol (jittered, seeded label boxes) on a small nnU-Net dataset."""
import csv
import json

import numpy as np
import SimpleITK as sitk
import torch

from medsam_oracle import paired_models
from sammed3d.cli import main
from sammed3d.evaluation.boxes import box_rng, label_box
from sammed3d.geometry import ras_to_index
from sammed3d.medsam.model import Sam2DConfig
from test_cli_evaluate import _dataset


def test_label_box_is_the_key_slice_bbox_jittered_outward_and_seeded(ct_3mm_path):
    image = sitk.ReadImage(str(ct_3mm_path))
    gt = sitk.GetArrayFromImage(sitk.ReadImage(str(ct_3mm_path.parent / "labels.nii.gz"))) == 1  # spleen
    k = np.nonzero(gt.any(axis=(1, 2)))[0]
    box = label_box(gt, image, box_rng(0, "ct", 1))
    assert box == label_box(gt, image, box_rng(0, "ct", 1))
    assert box != label_box(gt, image, box_rng(1, "ct", 1))
    low, high = box.index_bounds(image)
    assert np.allclose([low[2], high[2]], [k.min(), k.max()])
    key = int(np.floor((low[2] + high[2]) / 2 + 0.5))
    rows, columns = np.nonzero(gt[key])
    for value, bound, sign in ((low[0], columns.min(), -1), (low[1], rows.min(), -1),
                               (high[0], columns.max(), 1), (high[1], rows.max(), 1)):
        assert -1e-6 <= sign * (value - bound) <= 5 + 1e-6


def test_evaluate_medsam_box_protocol(ct_3mm_path, tmp_path, capsys):
    dataset = _dataset(tmp_path / "Dataset001", ct_3mm_path)
    official, _ = paired_models(Sam2DConfig.named("tiny"), seed=32, scale=0.2)
    checkpoint = tmp_path / "tiny_medsam.pth"
    torch.save(official.state_dict(), checkpoint)
    out = tmp_path / "eval"
    argv = ["evaluate", str(dataset), "--model", "medsam", "--checkpoint", str(checkpoint), "-o", str(out),
            "--device", "cpu"]
    assert main(argv) == 0
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["case"], r["label"], r["clicks"]) for r in rows} == {("ct", "1", "1"), ("ct", "2", "1")}
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in rows)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["protocol"] == "box" and settings["box_jitter"] == 5
    assert (out / "predictions" / "ct" / "1.nii.gz").is_file()
    assert "box: mean Dice" in capsys.readouterr().out
