"""The image encoder runs without the GIL (full speed under Slicer's GIL-holding event loop) and computes exactly
what the eager encoder computes (bundled demo model, a real 128^3 ROI)."""
import ctypes
import threading

import pytest
import torch

import sammed3d
from SAMMed3DSlicerLib.gil_free import is_gil_free, release_gil_in_encoder


@pytest.fixture(scope="module")
def models():
    eager = sammed3d.load_model("demo", "cpu")
    wrapped = sammed3d.load_model("demo", "cpu")
    assert release_gil_in_encoder(wrapped) and not release_gil_in_encoder(wrapped)  # wrapped once
    assert is_gil_free(wrapped.image_encoder) and not is_gil_free(eager.image_encoder)
    return eager, wrapped


def roi(batch=1):
    return torch.randn(batch, 1, 128, 128, 128, generator=torch.Generator().manual_seed(3))


def test_same_embedding_as_the_eager_encoder(models):
    eager, wrapped = models
    with torch.inference_mode():
        expected = eager.encode(roi())
        assert torch.equal(wrapped.encode(roi()), expected)  # first call traces
        assert torch.equal(wrapped.encode(roi()), expected)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):  # reduced precision: eager path
        low = wrapped.encode(roi())
    assert low.shape == expected.shape


def finishes_within_a_short_wait_after_a_long_gil_hold(model):
    """Start an encoder pass (twelve ROIs) in a thread, give it 0.5 s to get going (a loaded CI machine may not
    schedule it at once), hold the GIL in a C call (as Slicer's idle event loop does) for far longer than the pass
    takes, then give the thread 50 ms: only an encoder that kept running while the GIL was held is done (the eager
    one needs several times the 0.55 s it got without the GIL held)."""
    libc = ctypes.PyDLL(None)
    started, done = threading.Event(), threading.Event()
    x = roi(batch=12)

    def run():
        with torch.inference_mode():
            started.set()
            model.encode(x)
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    done.wait(0.5)  # the GIL is free: the thread gets into the encoder
    libc.usleep(10000000)  # 10 s with the GIL held (the demo encoder needs 1-3 s for twelve ROIs)
    finished = done.wait(0.05)
    thread.join(60)
    return finished


@pytest.mark.slow
def test_the_encoder_runs_while_the_main_thread_holds_the_gil(models):
    eager, wrapped = models
    with torch.inference_mode():
        wrapped.encode(roi(batch=12))  # traced already (the module's warm-up does this in the background)
    assert finishes_within_a_short_wait_after_a_long_gil_hold(wrapped)
    assert not finishes_within_a_short_wait_after_a_long_gil_hold(eager)  # eager needs the GIL between operations
