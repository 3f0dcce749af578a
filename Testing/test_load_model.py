"""`sammed3d.load_model`: official-format checkpoints in, eval-mode model out; bad files refused clearly."""
import argparse
import os

import numpy as np
import pytest
import torch

import sammed3d
from oracle import official_model, randomize_, relative_error
from sammed3d.errors import CheckpointError
from sammed3d.model import SamMed3DConfig
from sammed3d.weights import write_safetensors

TINY = SamMed3DConfig.named("tiny")


@pytest.fixture(scope="module")
def official_tiny():
    return randomize_(official_model(TINY), seed=21)


def _official_checkpoint(model, path, prefix=""):
    """The structure the official training script saves (pickled dict with optimizer state, Namespace, numpy)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=8e-4, weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[120, 180], gamma=0.1)
    torch.save(
        {
            "epoch": 3,
            "model_state_dict": {prefix + k: v for k, v in model.state_dict().items()},
            "optimizer_state_dict": optimizer.state_dict(),
            "lr_scheduler_state_dict": scheduler.state_dict(),
            "losses": [np.float64(0.5), np.float64(0.4)],
            "dices": [np.float32(0.6)],
            "best_loss": np.float64(0.4),
            "best_dice": np.float64(0.6),
            "args": argparse.Namespace(task_name="ft", lr=8e-4, multi_click=True),
            "used_datas": ["ct_abdomen"],
        },
        path,
    )
    return path


@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_format_checkpoint_loads_and_computes_like_official(official_tiny, tmp_path, prefix):
    path = _official_checkpoint(official_tiny, tmp_path / "ckpt.pth", prefix)
    model = sammed3d.load_model(str(path), device="cpu")
    assert not model.training
    assert model.config == TINY
    x = torch.randn(1, 1, 128, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert relative_error(model.image_encoder(x), official_tiny.image_encoder(x)) <= 1e-3


def test_safetensors_checkpoint_loads(official_tiny, tmp_path):
    path = write_safetensors(official_tiny.state_dict(), tmp_path / "weights.safetensors")
    model = sammed3d.load_model(path, device="auto")
    for key, value in official_tiny.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_missing_and_unexpected_keys_are_listed(official_tiny, tmp_path):
    state = dict(official_tiny.state_dict())
    del state["mask_decoder.iou_token.weight"]
    state["image_encoder.extra_head.weight"] = torch.zeros(3)
    path = write_safetensors(state, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError) as info:
        sammed3d.load_model(path)
    message = str(info.value)
    assert "mask_decoder.iou_token.weight" in message and "image_encoder.extra_head.weight" in message
    assert "\n" not in message


def test_not_a_sam_med3d_checkpoint(tmp_path):
    path = write_safetensors({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="not a SAM-Med3D checkpoint"):
        sammed3d.load_model(path)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch %s" % self.marker,))


def test_code_payload_is_refused_and_never_runs(official_tiny, tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth"
    torch.save({"model_state_dict": official_tiny.state_dict(), "args": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refused"):
        sammed3d.load_model(str(path))
    assert not marker.exists()


def test_truncated_checkpoint_is_a_clear_error(official_tiny, tmp_path):
    path = _official_checkpoint(official_tiny, tmp_path / "ckpt.pth")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        sammed3d.load_model(str(path))


def test_unknown_device_is_a_clear_error(official_tiny, tmp_path):
    path = write_safetensors(official_tiny.state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(sammed3d.SamMed3DError, match="device"):
        sammed3d.load_model(path, device="tpu")
