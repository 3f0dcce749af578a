"""The "Box" prompt (one ROI markup per segment) on real MRML (slicer-core), through the Qt-free controller with real
background jobs, on the local and the remote engine: an ROI placed (or released after resizing) is one computation
with a box; SAM-Med3D gets a positive click at the box's centre; MedSAM (a tiny randomized model) writes a mask
limited to the box's slice range, equal to MedSamSession's own; the server's box operation and its refusals."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch
import vtk

import sammed3d
from sammed3d.medsam.model import Sam2DConfig, build_sam_2d
from sammed3d.medsam.session import MedSamSession
from sammed3d.prompts import Box
from sammed3d.remote import RemoteError, RemoteSession, connect
from SAMMed3DSlicerLib.box_prompt import box_node, current_box
from SAMMed3DSlicerLib.controller import MODEL_KEY
from server_helpers import TOKEN, ServerThread
from slicer_scene import dice, internal_voxels
from test_slicer_controller import Fixture, drain


@pytest.fixture(scope="module")
def medsam_checkpoint(tmp_path_factory):
    """A tiny SAM 2D / MedSAM-format state dict with every parameter randomized (random weights give noise masks
    that never vanish, so propagation runs through the box's whole slice range)."""
    torch.manual_seed(0)
    model = build_sam_2d(Sam2DConfig.named("tiny"))
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.dtype.is_floating_point:
                tensor.normal_(0.0, 0.1)
    path = tmp_path_factory.mktemp("medsam") / "tiny_medsam.pth"
    torch.save(model.state_dict(), path)
    return str(path)


def place_box(fx, low_kji, high_kji):
    """Draw the selected segment's ROI spanning two voxel centres of the CT (world coordinates), as Slicer's ROI
    widget does: in place mode the ROI gets its point and size step by step; place mode ends when it is drawn."""
    assert fx.controller.start_placing_box()
    roi = box_node(fx.segmentation, fx.controller.segment_id)
    low, high = fx.world(low_kji), fx.world(high_kji)
    roi.SetCenter(*low)  # first corner: a point without a size
    roi.SetSize(*np.abs(high - low))  # dragging to the opposite corner
    roi.SetCenter(*((low + high) / 2))
    assert not segment_jobs(fx), "a box still being drawn triggers nothing"
    interaction = fx.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
    interaction.SetCurrentInteractionMode(interaction.ViewTransform)  # drawn: Slicer leaves place mode
    return roi


def segment_jobs(fx):
    return [key for key in fx.jobs.submitted if key != MODEL_KEY]


@pytest.fixture()
def demo(ct_3mm_path):
    fixture = Fixture("demo", ct_3mm_path)
    yield fixture
    fixture.controller.close()
    fixture.jobs.shutdown()


def test_sam_med3d_takes_a_placed_box_as_its_centre_click(demo, ct_3mm_path):
    fx = demo
    other_before = internal_voxels(fx.segmentation, fx.other)
    fx.controller.select(fx.volume, fx.segmentation, fx.a)
    fx.controller.load_model()
    drain(fx.controller)
    roi = place_box(fx, (14, 40, 80), (22, 60, 100))
    assert len(segment_jobs(fx)) == 1  # placed: one computation
    drain(fx.controller)
    boxed = fx.mask(fx.a)
    assert boxed is not None and boxed.any() and "a box" in fx.view.statuses[-1]

    # the same segment from one positive click at the box's centre (volume-local RAS), without a box
    reference = Fixture("demo", ct_3mm_path)
    try:
        reference.controller.select(reference.volume, reference.segmentation, reference.a)
        centre_world = np.asarray(roi.GetCenter())
        reference.controller.prompt_nodes()[0].AddControlPointWorld(vtk.vtkVector3d(*centre_world))
        drain(reference.controller)
        assert dice(boxed, reference.mask(reference.a)) >= 0.98
    finally:
        reference.controller.close()
        reference.jobs.shutdown()

    roi.InvokeEvent(roi.PointStartInteractionEvent)  # a handle grabbed: dragging changes nothing yet
    roi.SetSize(*(np.asarray(roi.GetSize()) * 0.5))
    roi.SetCenter(*(np.asarray(roi.GetCenter()) + 20))
    assert len(segment_jobs(fx)) == 1
    roi.InvokeEvent(roi.PointEndInteractionEvent)  # released after moving it: one more computation
    assert len(segment_jobs(fx)) == 2
    roi.InvokeEvent(roi.PointStartInteractionEvent)
    roi.InvokeEvent(roi.PointEndInteractionEvent)  # released without a change: nothing
    assert len(segment_jobs(fx)) == 2
    drain(fx.controller)
    assert dice(fx.mask(fx.a), boxed) < 0.98  # the moved box's centre is another click
    other_after = internal_voxels(fx.segmentation, fx.other)
    assert other_after[0] == other_before[0] and np.array_equal(other_after[1], other_before[1])
    assert not fx.view.errors


def test_a_box_still_being_drawn_triggers_nothing_and_placing_a_box_is_a_mode(demo):
    fx = demo
    fx.controller.select(fx.volume, fx.segmentation, fx.a)
    assert fx.controller.start_placing_box() and fx.controller.placing_box and fx.controller.placing is None
    roi = box_node(fx.segmentation, fx.a)
    roi.SetCenter(*fx.world((15, 50, 90)))  # first corner: a point, no size yet
    roi.SetSize(10, 10, 0)
    assert segment_jobs(fx) == [] and MODEL_KEY not in fx.jobs.submitted
    fx.controller.select(fx.volume, fx.segmentation, fx.b)  # drawing follows the selected segment
    assert fx.controller.placing_box and not box_node(fx.segmentation, fx.a).GetDisplayVisibility()
    fx.controller.stop_placing()
    assert not fx.controller.placing_box


def test_reset_removes_the_box_and_undo_brings_it_back(demo):
    fx = demo
    fx.controller.select(fx.volume, fx.segmentation, fx.a)
    roi = place_box(fx, (14, 40, 80), (22, 60, 100))
    drain(fx.controller)
    boxed = fx.mask(fx.a)
    centre, size = roi.GetCenter(), roi.GetSize()
    assert fx.controller.reset()
    assert roi.GetNumberOfControlPoints() == 0 and fx.mask(fx.a) is None and fx.controller.can_undo()
    assert fx.controller.undo()
    drain(fx.controller)
    np.testing.assert_allclose(roi.GetCenter(), centre, atol=1e-6)
    np.testing.assert_allclose(roi.GetSize(), size, atol=1e-6)
    assert dice(fx.mask(fx.a), boxed) >= 0.98


@pytest.fixture()
def medsam(medsam_checkpoint, ct_3mm_path):
    fixture = Fixture(medsam_checkpoint, ct_3mm_path)
    yield fixture
    fixture.controller.close()
    fixture.jobs.shutdown()


def box_slice_range(fx, roi):
    low, high = current_box(fx.volume, roi).index_bounds(fx.image)
    return int(np.floor(low[2] + 0.5)), int(np.floor(high[2] + 0.5))


def test_medsam_segments_the_box_slices_only(medsam, medsam_checkpoint):
    fx = medsam
    requests, compute = [], fx.logic.compute
    fx.logic.compute = lambda request: (requests.append(request), compute(request))[1]
    fx.controller.select(fx.volume, fx.segmentation, fx.a)
    roi = place_box(fx, (10, 40, 70), (16, 70, 100))
    assert len(segment_jobs(fx)) == 0 and fx.jobs.submitted == [MODEL_KEY]  # waits for the model
    drain(fx.controller)
    assert len(segment_jobs(fx)) == 1 and not fx.view.errors, fx.view.errors
    got = fx.mask(fx.a)
    assert requests[-1].progress[0] == requests[-1].progress[1] >= 2  # MedSAM reported every slice
    first, last = box_slice_range(fx, roi)
    assert 0 < first < last < got.shape[0] - 1
    slices = np.flatnonzero(got.any(axis=(1, 2)))
    assert slices.size and slices.min() >= first and slices.max() <= last  # nothing outside the box's slices
    assert slices.min() < slices.max()  # propagated beyond the key slice

    expected = MedSamSession(sammed3d.load_model(medsam_checkpoint, "cpu"), fx.image).set_box(
        current_box(fx.volume, roi))
    assert dice(got, sitk.GetArrayFromImage(expected)) >= 0.98

    positive, _ = fx.controller.prompt_nodes()  # points are SAM-Med3D's: a hint, no error dialog, mask kept
    roi.RemoveAllControlPoints()
    fx.click(positive, (15, 50, 90))
    drain(fx.controller)
    assert not fx.view.errors and "MedSAM takes a box" in fx.view.statuses[-1]


def test_medsam_box_on_a_server(medsam, medsam_checkpoint):
    fx = medsam
    model = sammed3d.load_model(medsam_checkpoint, "cpu")
    with ServerThread(model) as server:
        fx.controller.set_engine(server=server.url, token=TOKEN)
        fx.controller.select(fx.volume, fx.segmentation, fx.a)
        roi = place_box(fx, (10, 40, 70), (16, 70, 100))
        drain(fx.controller)
        assert not fx.view.errors, fx.view.errors
        assert server.store.counts()["sessions"] == 1
        expected = MedSamSession(model, fx.image).set_box(current_box(fx.volume, roi))
        assert dice(fx.mask(fx.a), sitk.GetArrayFromImage(expected)) >= 0.98


def raw_post(url, body, connection):
    """The HTTP status of a POST of raw bytes as JSON, with the connection's token and client id."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": "Bearer " + connection.token,
        "X-Client-Id": connection.client_id})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_server_box_operation(medsam_checkpoint, ct_3mm_path):
    image = sitk.ReadImage(str(ct_3mm_path))
    model = sammed3d.load_model(medsam_checkpoint, "cpu")
    low = image.TransformIndexToPhysicalPoint((70, 40, 10))
    high = image.TransformIndexToPhysicalPoint((100, 70, 16))
    box = Box((-low[0], -low[1], low[2]), (-high[0], -high[1], high[2]))
    with ServerThread(model) as server:
        connection = connect(server.url, TOKEN)
        assert connection.info["family"] == "medsam"
        session = RemoteSession(connection, image)
        got = sitk.GetArrayFromImage(session.set_box(box))
        expected = sitk.GetArrayFromImage(MedSamSession(model, image).set_box(box))
        assert np.array_equal(got, expected) and got.any()
        assert session.set_box(box) is not None  # again, on the open session
        with pytest.raises(RemoteError, match="MedSAM"):  # clicks are refused with a reason, not a 500
            session.set_clicks([(box.centre, True)])
        path = "/sessions/%s/box" % session._session_id  # noqa: SLF001
        for garbage in ({}, {"corner1": [1, 2], "corner2": [1, 2, 3]}, {"corner1": [1, 2, "x"], "corner2": [0] * 3},
                        {"corner1": [0] * 3, "corner2": [0] * 3, "extra": 1}, [], "box"):
            status, _ = connection.request("POST", path, garbage, ok=tuple(range(200, 600)))
            assert 400 <= status < 500, (garbage, status)
        for raw in (b'{"corner1": [Infinity, 0, 0], "corner2": [0, 0, 0]}', b'{"corner1": [NaN, 0, 0], '
                    b'"corner2": [0, 0, 0]}', b"\xff\xfe", b'{"corner1": [1e400, 0, 0], "corner2": [0, 0, 0]}'):
            status = raw_post(server.url + path, raw, connection)
            assert 400 <= status < 500, (raw, status)
        status, answer = connection.request("POST", path, {"corner1": [5000, 5000, 5000], "corner2": [5001] * 3},
                                            ok=tuple(range(200, 600)))
        assert status == 400 and "outside" in answer["error"]
        status, _ = connect(server.url, TOKEN).request("POST", path, {"corner1": list(box.corner1),
                                                                       "corner2": list(box.corner2)},
                                                       ok=tuple(range(200, 600)))
        assert status == 404  # another client's session
        import urllib.request

        request = urllib.request.Request(server.url + path, data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(Exception) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert getattr(refused.value, "code", None) in (401, 403)


def test_sam_med3d_server_takes_a_box_as_its_centre_click(ct_3mm_path):
    image = sitk.ReadImage(str(ct_3mm_path))
    low = image.TransformIndexToPhysicalPoint((70, 40, 10))
    high = image.TransformIndexToPhysicalPoint((100, 70, 16))
    box = Box((-low[0], -low[1], low[2]), (-high[0], -high[1], high[2]))
    with ServerThread(sammed3d.load_model("demo", "cpu")) as server:
        connection = connect(server.url, TOKEN)
        session = RemoteSession(connection, image)
        session._open(None, {"upload": 0.0})  # noqa: SLF001 - a session on the server
        _, answer = connection.request("POST", "/sessions/%s/box" % session._session_id,  # noqa: SLF001
                                       {"corner1": list(box.corner1), "corner2": list(box.corner2), "full": True})
        np.testing.assert_allclose(answer["clicks"][0][0], box.centre, atol=1e-9)
        assert answer["clicks"][0][1] is True and len(answer["clicks"]) == 1
        via_client = sitk.GetArrayFromImage(RemoteSession(connection, image).set_box(box))
        assert via_client.any()


def test_leaving_box_mode_without_drawing_keeps_the_previous_box(demo):
    fx = demo
    fx.controller.select(fx.volume, fx.segmentation, fx.a)
    roi = place_box(fx, (14, 40, 80), (22, 60, 100))
    drain(fx.controller)
    boxed, centre, jobs = fx.mask(fx.a), roi.GetCenter(), len(segment_jobs(fx))
    assert fx.controller.start_placing_box() and roi.GetNumberOfControlPoints() == 0
    fx.controller.stop_placing()  # Esc / Navigate before drawing
    drain(fx.controller)
    assert len(segment_jobs(fx)) == jobs and roi.GetNumberOfControlPoints() == 1
    np.testing.assert_allclose(roi.GetCenter(), centre, atol=1e-6)
    np.testing.assert_array_equal(fx.mask(fx.a), boxed)


def test_a_saved_box_is_a_slicer_roi_file_that_segment_reads(tmp_path):
    """What `sammed3d web` writes beside OUT for a segment's box: Slicer reads it as the same ROI, and
    `sammed3d segment --roi` (read_roi_box) as the same box."""
    import json

    import slicer

    from sammed3d.roi_markup import read_roi_box
    from sammed3d_web.saving import roi_document
    from slicer_scene import new_scene

    box = Box((40.0, 5.0, 30.0), (10.0, -20.0, 60.0))
    path = tmp_path / "liver.box.mrk.json"
    path.write_text(json.dumps(roi_document(box, "liver")))
    read = read_roi_box(path)
    np.testing.assert_allclose(read.corner1, (10.0, -20.0, 30.0), atol=1e-9)
    np.testing.assert_allclose(read.corner2, (40.0, 5.0, 60.0), atol=1e-9)
    scene = new_scene()
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    storage = slicer.vtkMRMLMarkupsROIJsonStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    np.testing.assert_allclose(node.GetCenter(), (25.0, -7.5, 45.0), atol=1e-6)
    np.testing.assert_allclose(node.GetSize(), (30.0, 25.0, 30.0), atol=1e-6)
