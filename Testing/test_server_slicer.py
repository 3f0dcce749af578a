"""The Slicer logic on a remote engine, on real MRML (slicer-core): the shared DICOM CT under a rotated parent
transform, a segmentation under another one holding another segment, clicks in world coordinates.

`InteractiveSegmentationLogic(server=URL, token=T)` must give what `InteractiveSegmentationLogic(checkpoint=CKPT,
device="cpu")` gives after each click; a wrong token is refused with a clear error and leaves the segment as it was;
a lost server gives a clear error (segment untouched) and a restarted one (sessions gone) is recovered from by
replaying the clicks.
"""
import numpy as np
import pytest
import SimpleITK as sitk

import sammed3d
from sammed3d.remote import AuthenticationError, RemoteError
from SAMMed3DSlicerLib import InteractiveSegmentationLogic
from SAMMed3DSlicerLib.prompt_nodes import prompt_nodes
from SAMMed3DSlicerLib.segment_io import read_segment_in_volume_grid
from server_helpers import TOKEN, ServerThread
from slicer_scene import build_scene, dice, internal_voxels, place, read_dicom_series

SESSION = {"max_rois": 1}
#: two positive clicks and one negative, as [k, j, i] voxels of the CT, with their markups node
CLICKS = (("positive", (10, 250, 260)), ("positive", (9, 240, 250)), ("negative", (10, 270, 300)))


@pytest.fixture(scope="module")
def checkpoint():
    """The bundled demo model: trained, so every click changes the mask (random weights fill the whole ROI)."""
    return "demo"


@pytest.fixture(scope="module")
def model(checkpoint):
    return sammed3d.load_model(checkpoint, "cpu")


@pytest.fixture(scope="module")
def ct_image(shared_data):
    return read_dicom_series(shared_data / "ct_abdomen_dicom" / "dicom")


def segment_array(scene_parts):
    _, volume, segmentation, _, target = scene_parts
    mask = read_segment_in_volume_grid(segmentation, target, volume)
    return None if mask is None else sitk.GetArrayFromImage(mask)


def click(logic, scene_parts, nodes, which, kji):
    _, volume, segmentation, _, target = scene_parts
    place(nodes[0] if which == "positive" else nodes[1], volume, kji)
    return logic.segment(volume, segmentation, target, *nodes)


def test_remote_logic_equals_local_logic_after_each_click(model, checkpoint, ct_image):
    local_scene, remote_scene = build_scene(ct_image), build_scene(ct_image)
    local_nodes = prompt_nodes(local_scene[2], local_scene[4])
    remote_nodes = prompt_nodes(remote_scene[2], remote_scene[4])
    other_before = internal_voxels(remote_scene[2], remote_scene[3])
    local = InteractiveSegmentationLogic(checkpoint=checkpoint, device="cpu", **SESSION)
    with ServerThread(model) as server:
        remote = InteractiveSegmentationLogic(server=server.url, token=TOKEN, **SESSION)
        for index, (which, kji) in enumerate(CLICKS):
            click(local, local_scene, local_nodes, which, kji)
            update = click(remote, remote_scene, remote_nodes, which, kji)
            expected, got = segment_array(local_scene), segment_array(remote_scene)
            assert expected is not None and expected.any(), "the local mask is empty: the test would prove nothing"
            assert dice(got, expected) >= 0.98, (index, dice(got, expected))
            assert update.clicks == index + 1
            if index:
                assert dice(expected, previous) < 0.98, "the click changed nothing: the test would prove little"
            previous = expected
            if index:
                assert update.timings["encoder"] == 0.0  # refinements reuse the server's cached embedding
        # undo and redo go through the server too
        remote.undo(remote_scene[1], remote_scene[2], remote_scene[4], *remote_nodes)
        local.undo(local_scene[1], local_scene[2], local_scene[4], *local_nodes)
        assert dice(segment_array(remote_scene), segment_array(local_scene)) >= 0.98
    other_after = internal_voxels(remote_scene[2], remote_scene[3])
    assert other_after[0] == other_before[0] and np.array_equal(other_after[1], other_before[1])


def test_wrong_token_is_refused_and_the_segment_is_untouched(model, ct_image):
    scene_parts = build_scene(ct_image)
    _, volume, segmentation, other, _ = scene_parts
    before = internal_voxels(segmentation, other)
    nodes = prompt_nodes(segmentation, other)  # a segment with content: it must survive
    place(nodes[0], volume, CLICKS[0][1])
    with ServerThread(model) as server:
        logic = InteractiveSegmentationLogic(server=server.url, token="not-the-token", **SESSION)
        with pytest.raises(AuthenticationError, match="refused the token"):
            logic.segment(volume, segmentation, other, *nodes)
    after = internal_voxels(segmentation, other)
    assert after[0] == before[0] and np.array_equal(after[1], before[1])


def test_lost_and_restarted_server(model, checkpoint, ct_image):
    local_scene, remote_scene = build_scene(ct_image), build_scene(ct_image)
    local_nodes = prompt_nodes(local_scene[2], local_scene[4])
    remote_nodes = prompt_nodes(remote_scene[2], remote_scene[4])
    local = InteractiveSegmentationLogic(checkpoint=checkpoint, device="cpu", **SESSION)
    server = ServerThread(model).start()
    remote = InteractiveSegmentationLogic(server=server.url, token=TOKEN, **SESSION)
    click(local, local_scene, local_nodes, *CLICKS[0])
    click(remote, remote_scene, remote_nodes, *CLICKS[0])
    after_first = segment_array(remote_scene)
    server.stop()  # connection lost: a clear error, and the segment keeps its content
    with pytest.raises(RemoteError, match="cannot reach the SAM-Med3D server"):
        click(remote, remote_scene, remote_nodes, *CLICKS[1])
    assert np.array_equal(segment_array(remote_scene), after_first)
    # the server comes back (on the same address) without the session: the clicks are replayed
    server = ServerThread(model, port=server.port).start()
    try:
        _, volume, segmentation, _, target = remote_scene
        update = remote.segment(volume, segmentation, target, *remote_nodes)
        assert update.clicks == 2 and update.timings["upload"] > 0  # the image went up again
        click(local, local_scene, local_nodes, *CLICKS[1])
        assert dice(segment_array(remote_scene), segment_array(local_scene)) >= 0.98
        click(local, local_scene, local_nodes, *CLICKS[2])
        click(remote, remote_scene, remote_nodes, *CLICKS[2])
        assert dice(segment_array(remote_scene), segment_array(local_scene)) >= 0.98
    finally:
        server.stop()
