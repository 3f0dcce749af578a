"""`sammed3d train`: crops, clicks, loss, official-format checkpoints, resume, errors (tiny model, synthetic data)."""
import argparse
import csv
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from oracle import official_model
from train_helpers import make_tiny_dataset

from sammed3d.cli import main
from sammed3d.evaluation.datasets import find_cases
from sammed3d.model import SamMed3DConfig, build_sam_med3d
from sammed3d.roi import extract_roi
from sammed3d.training import CropSampler, export_safetensors, load_checkpoint
from sammed3d.training.checkpoint import OFFICIAL_KEYS
from sammed3d.training.clicks import next_clicks
from sammed3d.training.loss import batch_dice, dice_ce_loss
from sammed3d.training.trainer import TrainOptions, lr_factor

REPO = Path(__file__).resolve().parents[1]
TINY = SamMed3DConfig.named("tiny")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("data") / "Dataset001_Tiny")


@pytest.fixture(scope="module")
def official_init(tmp_path_factory):
    """An official-format training checkpoint of a tiny official (medim) model."""
    torch.manual_seed(0)
    model = official_model(TINY)
    path = tmp_path_factory.mktemp("init") / "official_tiny.pth"
    torch.save({"epoch": 3, "model_state_dict": model.state_dict(), "args": argparse.Namespace(lr=8e-4)}, path)
    return path


def read_log(out):
    with open(out / "train_log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def train_args(dataset, out, *extra):
    return ["train", str(dataset), "-o", str(out), "--config", "tiny", "--threads", "1", "--clicks", "2", *extra]


# ------------------------------------------------------------------------------------------------ crops


def test_crop_image_is_the_inference_roi_and_label_shares_its_grid(dataset):
    sampler = CropSampler(find_cases(str(dataset)), flip=False)
    assert {(t.label, t.name) for t in sampler.targets} == {(1, "ball"), (2, "box")}
    target = sampler.targets[0]
    loaded = sampler._cases[target.case_id]
    center = sampler.crop_center(target, np.random.default_rng(0))
    image, label = sampler.crop(target, center)
    assert image.shape == label.shape == (1, 128, 128, 128)
    assert torch.equal(image, extract_roi(loaded.image, center).image[0])
    # The ball is 150 HU brighter than its surroundings: on the shared grid the label covers the bright voxels.
    inside, outside = image[label > 0], image[(label == 0) & (image != image.min())]
    assert inside.mean() > outside.mean() + 2.0
    bright = image > (inside.mean() + outside.mean()) / 2
    assert batch_dice(bright[None].float() * 2 - 1, label[None]) > 0.9
    # Physical volume is preserved by the 1.5 mm resampling (ball radius 7.2 voxels at 2.5 x 2.5 x 3 mm).
    source_mm3 = (sitk.GetArrayViewFromImage(loaded.label) == 1).sum() * 2.5 * 2.5 * 3.0
    assert abs(float(label.sum()) * 1.5 ** 3 / source_mm3 - 1) < 0.1


def test_flips_move_image_and_label_together(dataset):
    cases = find_cases(str(dataset))
    plain = CropSampler(cases, flip=False)
    flipped = CropSampler(cases, flip=True)
    seen_flips = set()
    for seed in range(6):
        image_a, label_a = plain.sample(np.random.default_rng(seed), plain.targets[0])
        image_b, label_b = flipped.sample(np.random.default_rng(seed), plain.targets[0])
        matches = [axes for axes in ((), (1,), (2,), (3,), (1, 2), (1, 3), (2, 3), (1, 2, 3))
                   if torch.equal(torch.flip(image_a, axes) if axes else image_a, image_b)]
        assert matches, "the flipped crop is not a flip of the plain crop"
        axes = matches[0]
        assert torch.equal(torch.flip(label_a, axes) if axes else label_a, label_b)
        seen_flips.add(axes)
    assert len(seen_flips) > 1


def test_contrast_augmentation_keeps_labels_padding_and_normalisation(dataset):
    cases = find_cases(str(dataset))
    plain = CropSampler(cases, flip=False)
    augmented = CropSampler(cases, flip=False, contrast_prob=1.0)
    correlations = []
    target = plain.targets[0]
    for seed in range(6):
        center = plain.crop_center(target, np.random.default_rng(seed))
        image_a, label_a = plain.crop(target, center, rng=np.random.default_rng(seed))
        image_b, label_b = augmented.crop(target, center, rng=np.random.default_rng(seed))
        assert torch.equal(label_a, label_b)  # same crop, only the intensities change
        assert torch.isfinite(image_b).all()
        padding = torch.from_numpy(~extract_roi(augmented._cases[target.case_id].image, center).valid)[None]
        assert padding.any() and (~padding).any()
        assert torch.unique(image_b[padding]).numel() == 1  # padding stays 0 before normalisation ...
        assert float(image_b[padding][0]) < float(image_b[~padding].min())  # ... below every augmented voxel
        assert 0.2 < float(image_b[~padding].std()) < 5.0
        body = ~padding
        correlations.append(float(np.corrcoef(image_a[body].numpy(), image_b[body].numpy())[0, 1]))
    assert min(correlations) < 0.9, correlations  # really a new contrast, not a rescaling
    assert not torch.equal(augmented.sample(np.random.default_rng(1), plain.targets[0])[0],
                           augmented.sample(np.random.default_rng(2), plain.targets[0])[0])


def test_remap_contrast_per_label_intensities_and_thick_slices():
    from sammed3d.training.augment import _thick_slices, remap_contrast

    raw = np.full((32, 32, 32), 100.0, np.float32)
    label_map = np.zeros(raw.shape, np.uint8)
    label_map[4:14], label_map[18:28] = 1, 2  # two objects with the same intensity
    raw[label_map == 0] = -1000.0
    valid = np.ones(raw.shape, bool)
    valid[:, :, 30:] = False
    contrast = {}
    for per_label in (0.0, 1.0):
        differences = []
        for seed in range(20):
            out = remap_contrast(raw, valid, label_map, np.random.default_rng(seed), per_label_prob=per_label)
            assert np.all(out[~valid] == 0) and np.all(out[valid] >= 0) and np.isfinite(out).all()
            first, second = out[label_map == 1].mean(), out[label_map == 2].mean()
            differences.append(abs(first - second) / (first + second))
        contrast[per_label] = np.median(differences)
    # one intensity curve keeps equal tissues (nearly) equal; per-label intensities separate them (0.03 vs 0.4)
    assert contrast[0.0] < 0.1 and contrast[1.0] > 0.2, contrast
    ramp = np.broadcast_to(np.arange(40, dtype=np.float32)[None, None], (4, 4, 40)).copy()
    thick = _thick_slices(ramp, 4, 2)
    assert np.allclose(thick[..., 4:-4], ramp[..., 4:-4], atol=1e-4)  # linear data: averaging + lerp is exact
    blocky = np.repeat(np.random.default_rng(0).standard_normal(10).astype(np.float32), 4)[None, None]
    assert np.abs(np.diff(_thick_slices(np.tile(blocky, (2, 2, 1)), 4, 2), axis=2)).max() < np.abs(
        np.diff(np.tile(blocky, (2, 2, 1)), axis=2)).max()


def test_label_selection_and_empty_selection(dataset):
    cases = find_cases(str(dataset))
    assert {t.name for t in CropSampler(cases, include_labels=["box"]).targets} == {"box"}
    assert {t.name for t in CropSampler(cases, exclude_labels=["1"]).targets} == {"box"}
    with pytest.raises(Exception, match="no labelled object"):
        CropSampler(cases, include_labels=["liver"])


# ------------------------------------------------------------------------------------------- clicks, loss


def test_clicks_first_in_object_then_in_errors_positive_iff_false_negative():
    generator = torch.Generator().manual_seed(0)
    gt = torch.zeros(2, 1, 16, 16, 16)
    gt[:, :, 4:10, 4:10, 4:10] = 1
    for _ in range(20):
        coords, labels = next_clicks(gt, None, generator)
        assert coords.shape == (2, 1, 3) and labels.tolist() == [[1], [1]]
        for b in range(2):
            assert gt[(b, 0) + tuple(coords[b, 0].long().tolist())] == 1
    pred = torch.zeros_like(gt, dtype=torch.bool)
    pred[:, :, 4:10, 4:10, 4:7] = True  # under-segmented
    pred[:, :, 12:14, 12:14, 12:14] = True  # a false positive blob
    kinds = set()
    for _ in range(60):
        coords, labels = next_clicks(gt, pred, generator)
        for b in range(2):
            index = (b, 0) + tuple(coords[b, 0].long().tolist())
            assert bool(gt[index]) != bool(pred[index]), "click outside the error region"
            assert labels[b, 0] == int(bool(gt[index]) and not bool(pred[index]))
            kinds.add(int(labels[b, 0]))
    assert kinds == {0, 1}
    coords, labels = next_clicks(gt, gt.bool(), generator)  # perfect prediction: a positive click in the object
    assert labels.tolist() == [[1], [1]]


def test_dice_ce_loss_values():
    target = torch.zeros(1, 1, 8, 8, 8)
    target[..., 2:6, 2:6, 2:6] = 1
    perfect = target * 40 - 20
    assert dice_ce_loss(perfect, target) < 1e-3
    assert dice_ce_loss(-perfect, target) > 1.9
    zeros = torch.zeros_like(target)  # p = 0.5 everywhere: dice = 1 - 2*0.5*64 / (0.25*512 + 64), BCE = ln 2
    expected = 1 - 64.0 / (128 + 64) + float(np.log(2))
    assert float(dice_ce_loss(zeros, target)) == pytest.approx(expected, rel=1e-4)
    assert batch_dice(perfect, target) == 1.0 and batch_dice(-perfect, target) == 0.0


def test_lr_schedule_warmup_and_milestones():
    options = TrainOptions(datasets=["x"], out="y", steps=100, warmup=10, lr_milestones=(0.6, 0.9), gamma=0.1)
    assert lr_factor(0, options) == pytest.approx(0.1)
    assert lr_factor(9, options) == 1.0 and lr_factor(59, options) == 1.0
    assert lr_factor(60, options) == pytest.approx(0.1) and lr_factor(95, options) == pytest.approx(0.01)


# ------------------------------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_fine_tune_official_checkpoint_40_steps_loss_falls_and_loads_officially(dataset, official_init, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(dataset, out, "--init", str(official_init), "--steps", "40", "--clicks", "3",
                           "--save-every", "20", "--labels", "ball")) == 0
    rows = read_log(out)
    assert [int(r["step"]) for r in rows] == list(range(1, 41))
    losses = [float(r["loss"]) for r in rows]
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:5]), losses
    state = load_checkpoint(out / "checkpoint.pth")
    assert set(state) == set(OFFICIAL_KEYS)
    assert state["epoch"] == 40 and len(state["losses"]) == 40 and len(state["dices"]) == 40
    assert isinstance(state["args"], argparse.Namespace) and state["args"].init == str(official_init)
    assert state["best_loss"] == pytest.approx(min(losses), abs=1e-5)
    # Loads strictly into the official implementation of the same size, and through load_model.
    official = official_model(TINY)
    official.load_state_dict(state["model_state_dict"], strict=True)
    from sammed3d import load_model

    ours = load_model(str(out / "checkpoint.pth"))
    for key, value in state["model_state_dict"].items():
        assert torch.equal(ours.state_dict()[key], value)
    # The weights moved away from the initial checkpoint.
    initial = torch.load(official_init, weights_only=False)["model_state_dict"]
    key = "image_encoder.blocks.0.attn.qkv.weight"
    assert not torch.equal(initial[key], state["model_state_dict"][key])
    # ... and the official loader's way of reading the file (a pickled dict) works too.
    raw = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert "module.image_encoder.pos_embed" not in raw["model_state_dict"]


def test_resume_restores_step_optimizer_and_log(dataset, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(dataset, out, "--steps", "2", "--save-every", "1", "--objects-per-crop", "2",
                           "--loss-size", "64", "--deep-clicks", "0.5", "--contrast-aug", "0.5")) == 0
    first = load_checkpoint(out / "checkpoint.pth")
    assert first["epoch"] == 2 and os.stat(out / "checkpoint.pth").st_mode & 0o044
    assert first["args"].contrast_aug == 0.5
    # Without --resume an existing checkpoint is never overwritten.
    before = (out / "checkpoint.pth").read_bytes()
    assert main(train_args(dataset, out, "--steps", "3")) == 2
    assert (out / "checkpoint.pth").read_bytes() == before
    assert main(train_args(dataset, out, "--steps", "3", "--resume")) == 0
    state = load_checkpoint(out / "checkpoint.pth")
    assert state["epoch"] == 3 and len(state["losses"]) == 3 and state["losses"][:2] == first["losses"]
    steps = {int(s["step"]) for s in state["optimizer_state_dict"]["state"].values()}
    assert steps == {3}  # AdamW step count continued from 2
    assert state["lr_scheduler_state_dict"]["last_epoch"] == 3
    assert [int(r["step"]) for r in read_log(out)] == [1, 2, 3]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_user_errors_are_one_line(dataset, official_init, tmp_path, capsys):
    cases = [
        (["train", str(tmp_path / "missing"), "-o", str(tmp_path / "a")], "dataset folder not found"),
        (train_args(dataset, tmp_path / "b", "--init", str(tmp_path / "nope.pth")), "not found"),
        (train_args(dataset, tmp_path / "c", "--labels", "liver"), "no labelled object"),
        (train_args(dataset, tmp_path / "d", "--resume"), "no checkpoint.pth"),
        (train_args(dataset, tmp_path / "e", "--steps", "0"), "--steps must be"),
        (["train", str(dataset), "-o", str(tmp_path / "f"), "--config", "vit_b", "--init", str(official_init)],
         "different model size"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert "Traceback" not in err[0]


def test_export_safetensors_half(tmp_path, official_init):
    out = export_safetensors(official_init, tmp_path / "m.safetensors", half=True)
    assert zipfile.is_zipfile(out) is False and out.stat().st_size < official_init.stat().st_size * 0.6
    from sammed3d import load_model

    model = load_model(str(out))
    assert next(model.parameters()).dtype == torch.float32
    assert model.config == TINY


@pytest.mark.slow
def test_torchrun_two_cpu_processes(dataset, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "SAMMed3DSlicer"))
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    command = torchrun + ["--standalone", "--nproc_per_node", "2", "-m", "sammed3d"] + train_args(
        dataset, out, "--steps", "2", "--device", "cpu", "--objects-per-crop", "2", "--loss-size", "64")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_checkpoint(out / "checkpoint.pth")
    assert state["epoch"] == 2 and state["args"].world_size == 2
    assert [int(r["step"]) for r in read_log(out)] == [1, 2]
    model = build_sam_med3d(TINY)
    model.load_state_dict(state["model_state_dict"], strict=True)


def test_several_objects_per_crop_share_one_encoder_pass(dataset):
    from sammed3d.training.interaction import InteractiveTraining

    sampler = CropSampler(find_cases(str(dataset)), flip=False)
    images, labels, owners = sampler.batch(np.random.default_rng(1), 2, others=3)
    assert images.shape == (2, 1, 128, 128, 128) and labels.shape[1:] == (1, 128, 128, 128)
    assert len(labels) == len(owners) > 2 and owners.tolist() == sorted(owners.tolist())
    assert all(labels[n].any() for n in range(len(labels)))
    for image_index in (0, 1):  # different objects of one crop never overlap
        mine = labels[owners == image_index]
        assert float(mine.sum(0).max()) == 1.0
    torch.manual_seed(0)
    module = InteractiveTraining(build_sam_med3d(TINY), iterations=2, deep_clicks=0.5, loss_size=64)
    loss, dice = module(images, labels, torch.Generator().manual_seed(0), owners)
    loss.backward()
    assert torch.isfinite(loss) and 0.0 <= dice <= 1.0
    assert module.model.image_encoder.patch_embed.proj.weight.grad.abs().sum() > 0


def test_deep_clicks_stay_away_from_the_error_edge():
    generator = torch.Generator().manual_seed(0)
    gt = torch.zeros(1, 1, 24, 24, 24)
    gt[:, :, 2:20, 2:20, 2:20] = 1
    for _ in range(30):
        coords, labels = next_clicks(gt, None, generator, deep=1.0)
        assert labels.item() == 1 and all(4 <= int(c) <= 17 for c in coords[0, 0])


def test_balanced_cross_entropy_keeps_a_gradient_on_small_objects():
    target = torch.zeros(1, 1, 32, 32, 32)
    target[..., 10:12, 10:12, 10:12] = 1  # 8 of 32768 voxels
    logits = torch.full_like(target, -8.0, requires_grad=True)  # a model that learnt to predict nothing
    dice_ce_loss(logits, target).backward()
    plain = float(logits.grad[target > 0].mean())
    logits.grad = None
    dice_ce_loss(logits, target, balanced=True).backward()
    balanced = float(logits.grad[target > 0].mean())
    assert balanced < 100 * plain < 0  # pushes the object's logits up, far harder
    perfect = target * 40 - 20
    assert dice_ce_loss(perfect, target, balanced=True) < 1e-3


@pytest.mark.slow
def test_resume_with_more_steps_continues_the_new_schedule_and_the_clock(dataset, tmp_path):
    """--steps 2 (milestone 0.5: lr x0.1 from step 2 on), then --resume --steps 6 (milestone at step 3): the third
    step runs at the NEW schedule's full lr, not the old schedule's reduced one; `elapsed` keeps counting."""
    out = tmp_path / "run"
    common = ["--lr", "1e-3", "--lr-milestones", "0.5", "--loss-size", "32"]
    assert main(train_args(dataset, out, "--steps", "2", *common)) == 0
    assert main(train_args(dataset, out, "--steps", "6", "--resume", *common)) == 0
    rows = read_log(out)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-3, 1e-4, 1e-3, 1e-4, 1e-4, 1e-4])
    elapsed = [float(r["elapsed"]) for r in rows]
    assert elapsed == sorted(elapsed) and elapsed[2] >= elapsed[1] + float(rows[2]["seconds"]) - 0.15
    state = load_checkpoint(out / "checkpoint.pth")
    assert state["lr_scheduler_state_dict"]["last_epoch"] == 6
