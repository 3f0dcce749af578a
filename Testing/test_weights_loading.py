"""sammed3d.weights.read_state_dict: official checkpoints load, code payloads are refused, bad files fail cleanly."""
import argparse
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

from sammed3d.errors import CheckpointError
from sammed3d.weights import read_state_dict, write_safetensors
from sammed3d.weights.safe_load import allowed_globals, cache_path_for


def tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, bias=False), torch.nn.LayerNorm(2), torch.nn.Linear(2, 3)
    )


def official_checkpoint(model, ddp=False):
    """A dict shaped exactly like the one the official SAM-Med3D training script passes to torch.save."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=8e-4, weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[120, 180], gamma=0.1)
    model(torch.randn(1, 1, 5, 5, 4)).sum().backward()  # gives AdamW real exp_avg / exp_avg_sq state
    optimizer.step()
    scheduler.step()
    state = model.state_dict()
    if ddp:
        state = OrderedDict(("module." + k, v) for k, v in state.items())
    args = argparse.Namespace(
        task_name="turbo", model_type="vit_b_ori", img_size=128, lr=8e-4, batch_size=12, multi_click=True,
        device="cuda", port=12361, gpu_ids=[0, 1], work_dir="./work_dir", num_epochs=200, step_size=[120, 180],
    )
    return {
        "epoch": 3,
        "model_state_dict": state,
        "optimizer_state_dict": optimizer.state_dict(),
        "lr_scheduler_state_dict": scheduler.state_dict(),
        "losses": [np.float64(0.9), np.float64(0.7), np.float64(0.61)],
        "dices": [np.float64(0.2), np.float32(0.41)],
        "best_loss": np.float64(0.61),
        "best_dice": np.float32(0.41),
        "args": args,
        "used_datas": ["AbdomenCT-1K", "BraTS21", "COVID_lesion"],
    }


def assert_same_tensors(loaded, expected):
    assert sorted(loaded) == sorted(expected)
    for key, value in expected.items():
        assert loaded[key].dtype == value.dtype
        assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize("ddp", [False, True])
def test_official_training_checkpoint_loads_model_weights(tmp_path, ddp):
    model = tiny_model()
    path = tmp_path / "sam_med3d_turbo.pth"
    torch.save(official_checkpoint(model, ddp=ddp), path)
    # Sanity: torch's default weights_only load refuses this very file, so the allow-list is what makes it load.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert_same_tensors(read_state_dict(path), model.state_dict())


def test_numpy_1x_scalar_name_is_accepted(tmp_path):
    """Files written under numpy 1.x name the scalar helper numpy.core.multiarray.scalar."""
    model = tiny_model()
    path = tmp_path / "np1.pth"
    torch.save(official_checkpoint(model), path, _use_new_zipfile_serialization=False)
    raw = path.read_bytes()
    assert b"numpy._core.multiarray" in raw or b"numpy.core.multiarray" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    assert b"numpy.core.multiarray\n" in path.read_bytes()
    assert_same_tensors(read_state_dict(path), model.state_dict())


def test_allow_list_is_exactly_the_official_formats_needs():
    names = []
    for entry in allowed_globals():
        names.append(entry[1] if isinstance(entry, tuple) else "%s.%s" % (entry.__module__, entry.__qualname__))
    assert sorted(names) == sorted(
        [
            "argparse.Namespace",
            "numpy.dtype",
            "%s.%s" % (type(np.dtype(np.float64)).__module__, type(np.dtype(np.float64)).__qualname__),
            "%s.%s" % (type(np.dtype(np.float32)).__module__, type(np.dtype(np.float32)).__qualname__),
            "numpy.core.multiarray.scalar",
            "numpy._core.multiarray.scalar",
        ]
    )


def test_bare_state_dict_and_ddp_prefix(tmp_path):
    model = tiny_model()
    path = tmp_path / "bare.pth"
    torch.save(OrderedDict(("module." + k, v) for k, v in model.state_dict().items()), path)
    assert_same_tensors(read_state_dict(path), model.state_dict())


class CodePayload:
    """Unpickling this runs a command that creates the marker file (if the loader ever executes it)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, ("touch '%s'" % self.marker,))


class ObjectPayload:
    """A plain class instance: needs a non-allow-listed global, must be refused too."""

    def __reduce__(self):
        return (ObjectPayload, ())


@pytest.mark.parametrize("zip_format", [True, False])
def test_code_payload_is_refused_and_never_runs(tmp_path, zip_format):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pth"
    checkpoint = official_checkpoint(tiny_model())
    checkpoint["args"] = CodePayload(marker)
    torch.save(checkpoint, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    message = str(info.value)
    assert "refused" in message and "system" in message and "never executes code" in message
    assert "\n" not in message
    assert not marker.exists()
    # Control: the payload is real (an unsafe loader would run it).
    pickle.loads(pickle.dumps(CodePayload(marker)))
    assert marker.exists()


def test_unknown_class_is_refused(tmp_path):
    path = tmp_path / "obj.pth"
    torch.save({"model_state_dict": tiny_model().state_dict(), "extra": ObjectPayload()}, path)
    with pytest.raises(CheckpointError, match=r"needs .*ObjectPayload.*not allowed"):
        read_state_dict(path)


@pytest.mark.parametrize("zip_format", [True, False])
def test_truncated_file_is_reported(tmp_path, zip_format):
    path = tmp_path / "cut.pth"
    torch.save(official_checkpoint(tiny_model()), path, _use_new_zipfile_serialization=zip_format)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_state_dict(path)


def test_random_bytes_are_reported(tmp_path):
    path = tmp_path / "noise.pth"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_state_dict(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "nope.pth")


def test_file_without_tensors(tmp_path):
    path = tmp_path / "empty.pth"
    torch.save({"epoch": 1, "model_state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="no tensors"):
        read_state_dict(path)


def test_safetensors_round_trip_is_atomic(tmp_path):
    state = tiny_model().state_dict()
    state["tied"] = state["2.weight"]  # shared memory: safetensors itself would refuse this
    path = write_safetensors(state, tmp_path / "sub" / "weights.safetensors")
    assert sorted(p.name for p in path.parent.iterdir()) == ["weights.safetensors"]  # no temp file left
    assert_same_tensors(read_state_dict(path), state)


def test_safetensors_with_ddp_prefix_and_truncation(tmp_path):
    state = tiny_model().state_dict()
    path = write_safetensors({"module." + k: v for k, v in state.items()}, tmp_path / "w.safetensors")
    assert_same_tensors(read_state_dict(path), state)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_state_dict(path)


def test_failed_write_keeps_previous_file(tmp_path):
    path = write_safetensors(tiny_model().state_dict(), tmp_path / "w.safetensors")
    before = path.read_bytes()
    with pytest.raises(Exception):
        write_safetensors({"bad": "not a tensor"}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_cache_is_written_then_used(tmp_path, monkeypatch):
    model = tiny_model()
    source = tmp_path / "turbo.pth"
    torch.save(official_checkpoint(model), source)
    cache_dir = tmp_path / "cache"
    first = read_state_dict(source, cache=True, cache_dir=cache_dir)
    cached = cache_path_for(source, cache_dir)
    assert cached.is_file() and list(cache_dir.iterdir()) == [cached]
    assert_same_tensors(first, model.state_dict())

    def no_unpickling(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(torch, "load", no_unpickling)
    assert_same_tensors(read_state_dict(source, cache=True, cache_dir=cache_dir), model.state_dict())


def test_cache_follows_content_and_survives_a_bad_cache_file(tmp_path):
    source = tmp_path / "w.pth"
    cache_dir = tmp_path / "cache"
    torch.save(tiny_model().state_dict(), source)
    old_cache = cache_path_for(source, cache_dir)
    read_state_dict(source, cache=True, cache_dir=cache_dir)

    other = torch.nn.Linear(3, 3).state_dict()
    torch.save(other, source)  # new content -> a new cache entry, never the stale one
    assert cache_path_for(source, cache_dir) != old_cache
    assert_same_tensors(read_state_dict(source, cache=True, cache_dir=cache_dir), other)

    cache_path_for(source, cache_dir).write_bytes(b"garbage")
    assert_same_tensors(read_state_dict(source, cache=True, cache_dir=cache_dir), other)
    assert_same_tensors(read_state_dict(cache_path_for(source, cache_dir)), other)  # rewritten


def test_default_cache_dir_honours_env(tmp_path, monkeypatch):
    from sammed3d.weights.safe_load import default_cache_dir

    monkeypatch.setenv("SAMMED3D_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SAMMED3D_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "sammed3d"


def test_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="is not a file"):
        read_state_dict(tmp_path)
