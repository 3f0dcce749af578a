"""The controller switching engines (this computer <-> a `sammed3d serve` server) on real MRML (slicer-core), with a
real server in a thread, the bundled demo model (trained: every click changes the mask) and real background jobs.

A switch drops pending work (the model load too), keeps every segment's points and content, recomputes the segments
whose result was pending on the new engine, and replays a segment's points (seeded with its content from before the
first point) on the new engine at its next change; a server engine never asks to install PyTorch."""
import threading

import numpy as np
import pytest

import sammed3d
from SAMMed3DSlicerLib.controller import MODEL_KEY, ControllerView
from SAMMed3DSlicerLib.engine_settings import EngineChoice, apply_engine_choice
from SAMMed3DSlicerLib.interactive_logic import InteractiveSegmentationLogic
from server_helpers import TOKEN, ServerThread
from slicer_scene import dice, internal_voxels
from test_slicer_controller import Fixture, drain

CHECKPOINT = "demo"
#: Voxels [k, j, i] of the bundled 3 mm CT: two positive clicks in the liver, then a negative one.
POSITIVE_1, POSITIVE_2, NEGATIVE = (18, 50, 90), (22, 45, 95), (18, 62, 104)


@pytest.fixture(scope="module")
def server():
    with ServerThread(sammed3d.load_model(CHECKPOINT, "cpu")) as running:
        yield running


@pytest.fixture()
def fx(ct_3mm_path):
    fixture = Fixture(CHECKPOINT, ct_3mm_path)
    yield fixture
    fixture.controller.close()
    fixture.jobs.shutdown()


def reference_masks(ct_3mm_path, clicks):
    """The segment after each click, computed locally only (no engine switch)."""
    fixture = Fixture(CHECKPOINT, ct_3mm_path)
    try:
        fixture.controller.select(fixture.volume, fixture.segmentation, fixture.a)
        positive, negative = fixture.controller.prompt_nodes()
        masks = []
        for which, kji in clicks:
            fixture.click(positive if which else negative, kji)
            drain(fixture.controller)
            masks.append(fixture.mask(fixture.a))
        return masks
    finally:
        fixture.controller.close()
        fixture.jobs.shutdown()


def test_switching_to_a_server_replays_the_points_there(fx, server, ct_3mm_path):
    clicks = ((True, POSITIVE_1), (True, POSITIVE_2), (False, NEGATIVE))
    expected = reference_masks(ct_3mm_path, clicks)
    assert expected[0].any() and dice(expected[2], expected[1]) < 0.98, "clicks must matter, else this proves little"
    other_before = internal_voxels(fx.segmentation, fx.other)
    fx.controller.select(fx.volume, fx.segmentation, fx.a)
    positive, negative = fx.controller.prompt_nodes()
    fx.click(positive, POSITIVE_1)
    drain(fx.controller)
    fx.click(positive, POSITIVE_2)
    drain(fx.controller)
    assert dice(fx.mask(fx.a), expected[1]) >= 0.98
    submitted = len(fx.jobs.submitted)

    assert fx.controller.set_engine(server=server.url, token=TOKEN)
    assert not fx.controller.set_engine(server=server.url, token=TOKEN)  # unchanged: nothing to do
    assert len(fx.jobs.submitted) == submitted  # nothing was pending: nothing recomputed yet
    assert fx.logic.server == server.url and not fx.logic.model_loaded
    sessions_before = server.store.counts()["sessions"]

    fx.click(negative, NEGATIVE)  # the next click: the server gets all three points, seeded as before the first
    drain(fx.controller)
    assert fx.jobs.submitted[submitted:] == [MODEL_KEY, ("segment", fx.segmentation.GetID(), fx.a)]
    assert server.store.counts()["sessions"] == sessions_before + 1
    assert dice(fx.mask(fx.a), expected[2]) >= 0.98
    assert any(text.startswith("Connected to %s" % server.url) for text in fx.view.statuses)
    assert fx.view.statuses[-1].startswith("3 points")
    other_after = internal_voxels(fx.segmentation, fx.other)
    assert other_after[0] == other_before[0] and np.array_equal(other_after[1], other_before[1])

    assert fx.controller.undo()  # undo / redo history survives the switch, and runs on the server
    drain(fx.controller)
    assert dice(fx.mask(fx.a), expected[1]) >= 0.98
    assert fx.controller.set_engine(server=None, token=None)  # and back to this computer
    assert fx.controller.redo()
    drain(fx.controller)
    assert dice(fx.mask(fx.a), expected[2]) >= 0.98 and not fx.view.errors


def test_a_result_pending_at_the_switch_is_recomputed_on_the_new_engine(fx, server, ct_3mm_path):
    expected = reference_masks(ct_3mm_path, ((True, POSITIVE_1),))[0]
    fx.controller.select(fx.volume, fx.segmentation, fx.a)
    fx.controller.load_model()
    drain(fx.controller)
    positive, _ = fx.controller.prompt_nodes()
    fx.click(positive, POSITIVE_1)  # submitted to the local engine; not delivered yet
    assert fx.jobs.busy()
    sessions_before = server.store.counts()["sessions"]
    apply_engine_choice(fx.controller, EngineChoice("server", server.url + "/", TOKEN))
    drain(fx.controller)
    segment = ("segment", fx.segmentation.GetID(), fx.a)
    assert fx.jobs.submitted.count(segment) == 2  # the local job was dropped, the server computed it
    assert server.store.counts()["sessions"] == sessions_before + 1
    assert dice(fx.mask(fx.a), expected) >= 0.98 and not fx.view.errors


def test_a_model_still_loading_at_the_switch_is_not_used(server, ct_3mm_path, monkeypatch):
    """The local weights are still loading when the user picks a server: the local model never becomes the
    engine, the waiting click is computed on the server."""
    gate, started = threading.Event(), threading.Event()
    real_load = sammed3d.load_model

    def slow_load(*args, **kwargs):
        started.set()
        gate.wait(60)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(sammed3d, "load_model", slow_load)
    fx = Fixture(CHECKPOINT, ct_3mm_path)
    try:
        fx.controller.select(fx.volume, fx.segmentation, fx.a)
        positive, _ = fx.controller.prompt_nodes()
        fx.click(positive, POSITIVE_1)  # waits for the local model
        assert started.wait(30)
        sessions_before = server.store.counts()["sessions"]
        assert fx.controller.set_engine(server=server.url, token=TOKEN)
        assert fx.controller.jobs.submitted.count(MODEL_KEY) == 2  # a load for the server, behind the stale one
        gate.set()
        drain(fx.controller)
        assert fx.logic.model_loaded and fx.logic.load_model().__class__.__name__ == "ServerConnection"
        assert server.store.counts()["sessions"] == sessions_before + 1
        assert fx.mask(fx.a) is not None and fx.mask(fx.a).any() and not fx.view.errors
    finally:
        gate.set()
        fx.controller.close()
        fx.jobs.shutdown()


class InstallingView(ControllerView):
    def __init__(self):
        self.install_requests, self.errors, self.statuses = [], [], []

    def install_dependencies(self, then):
        self.install_requests.append(then)

    def error(self, message):
        self.errors.append(message)

    def status(self, text):
        self.statuses.append(text)


def test_a_server_engine_never_asks_to_install_pytorch(server, ct_3mm_path):
    from SAMMed3DSlicerLib.background import BackgroundJobs
    from SAMMed3DSlicerLib.controller import InteractiveSegmentationController

    view, jobs = InstallingView(), BackgroundJobs()
    logic = InteractiveSegmentationLogic(checkpoint=CHECKPOINT, device="cpu")
    controller = InteractiveSegmentationController(logic, jobs, view, dependencies_missing=lambda: True)
    try:
        assert not controller.load_model() and len(view.install_requests) == 1  # this computer: PyTorch needed
        controller.set_engine(server=server.url, token=TOKEN)
        controller.load_model()
        drain(controller)
        assert len(view.install_requests) == 1 and logic.model_loaded and not view.errors
        assert "Connected to %s" % server.url in view.statuses[-1]
    finally:
        controller.close()
        jobs.shutdown()


def test_a_wrong_token_is_reported_and_the_segment_is_untouched(fx, server):
    fx.controller.select(fx.volume, fx.segmentation, fx.other)
    before = fx.mask(fx.other)
    fx.controller.set_engine(server=server.url, token="wrong-token")
    positive, _ = fx.controller.prompt_nodes()
    fx.click(positive, POSITIVE_1)
    drain(fx.controller)
    assert fx.view.errors and "refused the token" in fx.view.errors[-1]
    np.testing.assert_array_equal(fx.mask(fx.other), before)
    assert not fx.logic.model_loaded
    fx.controller.set_engine(server=server.url, token=TOKEN)  # corrected: the next change computes
    fx.click(positive, POSITIVE_2)
    drain(fx.controller)
    assert fx.mask(fx.other) is not None and not np.array_equal(fx.mask(fx.other), before)


class MemorySettings(object):
    """What the module needs of Slicer's qt.QSettings: value(key, default) and setValue(key, value)."""

    def __init__(self):
        self.values = {}

    def value(self, key, default=None):
        return self.values.get(key, default)

    def setValue(self, key, value):  # noqa: N802 - Qt's name
        self.values[key] = value


def test_choosing_an_unusable_server_keeps_the_engine_and_says_why(fx, server):
    from SAMMed3DSlicerLib.engine_settings import choose_engine, read_engine_choice

    settings = MemorySettings()
    assert choose_engine(settings, fx.controller, EngineChoice("server", server.url, TOKEN)) is None
    assert fx.logic.server == server.url and read_engine_choice(settings).url == server.url
    for url in ("", "gpu-box:8000"):
        message = choose_engine(settings, fx.controller, EngineChoice("server", url, TOKEN))
        assert message and "\n" not in message and "server" in message.lower()
        assert fx.logic.server == server.url and read_engine_choice(settings).url == server.url
    # "This computer" while the (disabled) URL and token fields keep their text: both are kept for switching back
    assert choose_engine(settings, fx.controller, EngineChoice("local", server.url, TOKEN)) is None
    assert fx.logic.server is None and fx.logic.token is None and read_engine_choice(settings).kind == "local"
    assert read_engine_choice(settings).token == TOKEN
