"""MedSAM / SAM checkpoints load through `sammed3d.load_model`: plain SAM-format state dicts, safely, strictly."""
import pytest
import torch

import sammed3d
from medsam_oracle import official_box_decode, paired_models, randomize_, official_model, relative_error
from sammed3d.errors import CheckpointError
from sammed3d.medsam.model import Sam2D, Sam2DConfig
from sammed3d.model import SamMed3D, SamMed3DConfig, build_sam_med3d
from sammed3d.weights import write_safetensors


def test_randomized_segment_anything_vit_b_state_dict_loads(tmp_path):
    """A plain `torch.save(sam.state_dict())` of segment-anything's ViT-B, as medsam_vit_b.pth is."""
    official = randomize_(official_model(Sam2DConfig()), seed=21)
    path = tmp_path / "sam_vit_b_random.pth"
    torch.save(official.state_dict(), path)
    model = sammed3d.load_model(str(path))
    assert isinstance(model, Sam2D) and model.config == Sam2DConfig() and not model.training
    for key, value in official.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    embedding = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(22))
    boxes = torch.tensor([[100.0, 200.0, 400.0, 520.0]])
    with torch.inference_mode():
        expected, _ = official_box_decode(official, embedding, boxes)
        actual, _ = official_box_decode(model, embedding, boxes)
    assert relative_error(actual, expected) <= 1e-3


def test_dispatch_by_tensors_tiny_2d_and_3d(tmp_path):
    official, _ = paired_models(Sam2DConfig.named("tiny"), seed=23)
    path_2d = write_safetensors(official.state_dict(), tmp_path / "tiny2d.safetensors")
    path_3d = write_safetensors(build_sam_med3d(SamMed3DConfig.named("tiny")).state_dict(), tmp_path / "t3.safetensors")
    assert isinstance(sammed3d.load_model(path_2d), Sam2D)
    assert isinstance(sammed3d.load_model(path_3d), SamMed3D)


def test_ddp_prefix_and_training_dict_are_accepted(tmp_path):
    official, _ = paired_models(Sam2DConfig.named("tiny"), seed=24)
    path = tmp_path / "train.pth"
    torch.save({"model": {"module." + k: v for k, v in official.state_dict().items()}, "epoch": 3}, path)
    assert isinstance(sammed3d.load_model(str(path)), Sam2D)


def test_missing_key_is_named_in_one_line(tmp_path):
    official, _ = paired_models(Sam2DConfig.named("tiny"), seed=25)
    state = dict(official.state_dict())
    del state["prompt_encoder.point_embeddings.3.weight"]
    path = write_safetensors(state, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError) as info:
        sammed3d.load_model(path)
    assert "prompt_encoder.point_embeddings.3.weight" in str(info.value) and "\n" not in str(info.value)
    assert "MedSAM" in str(info.value)


def test_odd_position_embedding_is_refused(tmp_path):
    path = write_safetensors({"image_encoder.pos_embed": torch.zeros(4, 4)}, tmp_path / "odd.safetensors")
    with pytest.raises(CheckpointError, match="pos_embed"):
        sammed3d.load_model(path)
