"""`sammed3d evaluate` end to end on a small nnU-Net dataset built from the bundled CT."""
import csv
import json
import shutil

import numpy as np
import SimpleITK as sitk

from sammed3d.cli import main
from sammed3d.evaluation.metrics import dice
from sammed3d.weights import write_safetensors
from session_helpers import tiny_model


def _dataset(root, ct_3mm_path):
    (root / "imagesTs").mkdir(parents=True)
    (root / "labelsTs").mkdir()
    shutil.copy(ct_3mm_path, root / "imagesTs" / "ct_0000.nii.gz")
    labels = sitk.ReadImage(str(ct_3mm_path).replace("image.nii.gz", "labels.nii.gz"))
    keep = sitk.GetArrayFromImage(labels)
    keep[~np.isin(keep, [1, 2])] = 0  # spleen, right kidney
    out = sitk.GetImageFromArray(keep)
    out.CopyInformation(labels)
    sitk.WriteImage(out, str(root / "labelsTs" / "ct.nii.gz"))
    (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "spleen": 1, "kidney_right": 2},
                                                   "channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}))
    return root


def test_evaluate_writes_every_row_and_rescoring_matches(ct_3mm_path, tmp_path, capsys):
    dataset = _dataset(tmp_path / "Dataset001", ct_3mm_path)
    checkpoint = write_safetensors(tiny_model().state_dict(), tmp_path / "tiny.safetensors")
    out = tmp_path / "eval"
    argv = ["evaluate", str(dataset), "--checkpoint", str(checkpoint), "--clicks", "1", "3", "-o", str(out),
            "--device", "cpu"]
    assert main(argv) == 0
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["case"], r["label"], r["clicks"]) for r in rows} == {
        ("ct", label, clicks) for label in ("1", "2") for clicks in ("1", "3")}
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset / "labelsTs" / "ct.nii.gz")))
    for row in rows:
        if row["clicks"] == "3":
            prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "predictions" / "ct" / ("%s.nii.gz" % row["label"]))))
            assert abs(dice(labels == int(row["label"]), prediction > 0) - float(row["dice"])) <= 1e-3
    assert (out / "summary.json").is_file() and (out / "dice_vs_clicks.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(argv) == 0  # resumes: nothing left to do
    with open(out / "metrics.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)


def test_evaluate_missing_dataset_is_a_clean_error(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "none"), "-o", str(tmp_path / "o"), "--checkpoint", "demo"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_resume_with_other_settings_is_refused_before_the_model_loads(ct_3mm_path, tmp_path, capsys, monkeypatch):
    dataset = _dataset(tmp_path / "Dataset001", ct_3mm_path)
    checkpoint = write_safetensors(tiny_model().state_dict(), tmp_path / "tiny.safetensors")
    out = tmp_path / "eval"
    common = [str(dataset), "-o", str(out), "--device", "cpu"]
    assert main(["evaluate"] + common + ["--checkpoint", str(checkpoint), "--labels", "spleen", "--clicks", "1",
                                         "3"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    import sammed3d

    real_load_model = sammed3d.load_model

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(sammed3d, "load_model", no_model)
    # other labels (or mapping, seed, clicker, dataset ...): one line naming what changed; the model is never
    # loaded (the checkpoint path does not exist) and nothing in the folder changes
    for extra, changed in ((["--labels", "1", "2"], "labels"), (["--labels", "1", "--seed", "3"], "seed"),
                           (["--labels", "1", "--official-mapping"], "mapping")):
        assert main(["evaluate"] + common + ["--checkpoint", str(checkpoint), "--clicks", "1"] + extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "other settings" in err and changed in err, err
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    monkeypatch.setattr(sammed3d, "load_model", real_load_model)
    # the same settings with fewer click counts resume; the summary covers what was asked, over the same objects
    assert main(["evaluate"] + common + ["--checkpoint", str(checkpoint), "--labels", "1", "--clicks", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [(e["clicks"], e["n"]) for e in summary["overall"]] == [(1, 1)]
    assert summary["settings"]["labels"] == [1] and summary["settings"]["clicks"] == [1]


def test_evaluate_unusable_output_folder_is_refused_before_the_model_loads(ct_3mm_path, tmp_path, capsys):
    dataset = _dataset(tmp_path / "Dataset001", ct_3mm_path)
    (tmp_path / "file").write_text("x")
    assert main(["evaluate", str(dataset), "-o", str(tmp_path / "file"), "--checkpoint", str(tmp_path / "n.pth")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a folder" in err and str(tmp_path / "file") in err
