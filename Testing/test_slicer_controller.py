"""The Qt-free controller on real MRML (slicer-core) with a real (tiny, random) SAM-Med3D and real background jobs:
one test per defect the controller owns (issue #8): which events trigger work, per-segment newest-wins jobs,
segment switch while placing, scene close and volume removal while work is pending, undoable reset, undo / redo,
warm-up on model load."""
import threading
import time

import numpy as np
import pytest
import SimpleITK as sitk
import vtk

import torch

from sammed3d.model import build_sam_med3d
from sammed3d.model.config import SamMed3DConfig
from SAMMed3DSlicerLib.background import BackgroundJobs
from SAMMed3DSlicerLib.controller import MODEL_KEY, ControllerView, InteractiveSegmentationController
from SAMMed3DSlicerLib.interactive_logic import InteractiveSegmentationLogic
from SAMMed3DSlicerLib.segment_io import read_segment_in_volume_grid, write_mask_to_segment
from slicer_scene import internal_voxels, linear_transform_node, new_scene, to_world, volume_node_from_sitk
from slicer_scene import voxel_centres_local

import slicer


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_sam_med3d(SamMed3DConfig.named("tiny"))
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.dtype.is_floating_point:
                tensor.normal_(0.0, 0.05)
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save({"model_state_dict": model.state_dict()}, path)
    return str(path)


class RecordingView(ControllerView):
    def __init__(self):
        self.statuses, self.errors = [], []

    def status(self, text):
        self.statuses.append(text)

    def error(self, message):
        self.errors.append(message)


class RecordingJobs(BackgroundJobs):
    """Real background jobs that remember which keys were submitted."""

    def __init__(self):
        BackgroundJobs.__init__(self)
        self.submitted = []

    def submit(self, key, function, on_done, on_error, on_poll=None):
        self.submitted.append(key)
        return BackgroundJobs.submit(self, key, function, on_done, on_error, on_poll)


def drain(controller, timeout=120):
    deadline = time.monotonic() + timeout
    while controller.poll():
        assert time.monotonic() < deadline, "background work did not finish"


class Fixture(object):
    """The bundled 3 mm CT under a rotated parent transform, a segmentation (under another transform) holding an
    'other' segment and two empty ones, a controller with real jobs and a tiny model."""

    def __init__(self, checkpoint, ct_path, logic=None):
        self.scene = new_scene()
        image = sitk.ReadImage(str(ct_path))
        self.image = image
        self.volume = volume_node_from_sitk(self.scene, image, "CT")
        self.volume.SetAndObserveTransformNodeID(linear_transform_node(self.scene, (0, 20, -10), (-12, 5, 20)).GetID())
        self.segmentation = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        self.segmentation.SetAndObserveTransformNodeID(linear_transform_node(self.scene, (10, 0, 0), (3, 3, 3)).GetID())
        segments = self.segmentation.GetSegmentation()
        self.other = segments.AddEmptySegment("other")
        other_mask = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
        other_mask[10:20, 40:70, 50:80] = 1
        other_image = sitk.GetImageFromArray(other_mask)
        other_image.CopyInformation(image)
        write_mask_to_segment(other_image, self.volume, self.segmentation, self.other)
        self.a = segments.AddEmptySegment("a")
        self.b = segments.AddEmptySegment("b")
        self.logic = logic or InteractiveSegmentationLogic(checkpoint=checkpoint, device="cpu", max_rois=1)
        self.jobs = RecordingJobs()
        self.view = RecordingView()
        self.controller = InteractiveSegmentationController(self.logic, self.jobs, self.view, self.scene,
                                                            dependencies_missing=lambda: False)

    def world(self, kji):
        return to_world(self.volume, voxel_centres_local(self.volume, [kji]))[0]

    def click(self, node, kji):
        return node.AddControlPointWorld(vtk.vtkVector3d(*self.world(kji)))

    def mask(self, segment_id):
        mask = read_segment_in_volume_grid(self.segmentation, segment_id, self.volume)
        return None if mask is None else sitk.GetArrayFromImage(mask)

    def segment_jobs(self):
        return [key for key in self.jobs.submitted if key != MODEL_KEY]


@pytest.fixture()
def fx(tiny_checkpoint, ct_3mm_path):
    fixture = Fixture(tiny_checkpoint, ct_3mm_path)
    yield fixture
    fixture.controller.close()
    fixture.jobs.shutdown()


def test_placing_a_point_segments_the_selected_segment_and_keeps_the_other(fx):
    other_before = internal_voxels(fx.segmentation, fx.other)
    fx.controller.select(fx.volume, fx.segmentation, fx.a)
    positive, _ = fx.controller.prompt_nodes()
    fx.click(positive, (15, 50, 60))
    assert fx.jobs.submitted == [MODEL_KEY]  # first click: load the model first, the click waits for it
    drain(fx.controller)
    assert fx.segment_jobs() == [("segment", fx.segmentation.GetID(), fx.a)]
    assert fx.mask(fx.a) is not None and fx.mask(fx.a).any()
    other_after = internal_voxels(fx.segmentation, fx.other)
    assert other_after[0] == other_before[0] and np.array_equal(other_after[1], other_before[1])
    assert not fx.view.errors


def test_preview_point_and_unchanged_click_list_trigger_nothing(fx):
    """Slicer adds a preview control point under the cursor while placing, moves it with the cursor (modified /
    undefined events) and removes it when the cursor leaves the view (PointRemovedEvent). None of this is a click,
    nor is any event that leaves the list of clicks unchanged."""
    from SAMMed3DSlicerLib.prompt_nodes import prompt_nodes

    positive, negative = prompt_nodes(fx.segmentation, fx.a)
    fx.click(positive, (15, 50, 60))  # a point placed earlier
    preview = fx.click(positive, (15, 55, 65))  # the cursor's preview point (made a preview below)
    local = voxel_centres_local(fx.volume, [(15, 55, 65)])[0]
    positive.SetNthControlPointPosition(preview, *local, positive.PositionPreview)
    fx.controller.select(fx.volume, fx.segmentation, fx.a)
    for kji in ((15, 57, 66), (15, 59, 67)):  # the preview follows the cursor
        local = voxel_centres_local(fx.volume, [kji])[0]
        positive.SetNthControlPointPosition(preview, *local, positive.PositionPreview)
    positive.RemoveNthControlPoint(preview)  # the cursor leaves the view
    positive.InvokeEvent(positive.PointEndInteractionEvent)  # an interaction that moved nothing
    negative.InvokeEvent(negative.PointRemovedEvent)
    assert fx.jobs.submitted == [], "an unchanged click list triggered work"

    # A preview that becomes a placed point, a moved point and a removed defined point are clicks.
    index = fx.click(positive, (15, 55, 65))
    assert fx.jobs.submitted == [MODEL_KEY]
    drain(fx.controller)
    assert len(fx.segment_jobs()) == 1
    world = fx.world((14, 52, 63))
    positive.SetNthControlPointPositionWorld(index, *world)
    positive.InvokeEvent(positive.PointEndInteractionEvent)  # end of the drag
    assert len(fx.segment_jobs()) == 2
    positive.RemoveNthControlPoint(0)
    assert len(fx.segment_jobs()) == 3
    drain(fx.controller)
    assert fx.logic.clicks(fx.volume, fx.segmentation, fx.a)[0].world == pytest.approx(tuple(world))
    assert not fx.view.errors


def test_jobs_are_newest_wins_per_segment(fx):
    """A click in segment B while segment A's result is pending must not lose A's result."""
    fx.controller.select(fx.volume, fx.segmentation, fx.a)
    fx.controller.load_model()
    drain(fx.controller)
    positive_a, _ = fx.controller.prompt_nodes()
    fx.click(positive_a, (15, 50, 60))  # A submitted, not yet delivered
    fx.controller.select(fx.volume, fx.segmentation, fx.b)
    positive_b, _ = fx.controller.prompt_nodes()
    fx.click(positive_b, (12, 40, 45))  # B submitted
    drain(fx.controller)
    assert fx.mask(fx.a) is not None and fx.mask(fx.a).any(), "segment A's result was dropped"
    assert fx.mask(fx.b) is not None and fx.mask(fx.b).any()
    # Newest wins within a segment: two clicks in A before a poll -> the segment reflects both clicks.
    fx.controller.select(fx.volume, fx.segmentation, fx.a)
    fx.click(positive_a, (16, 52, 62))
    fx.click(positive_a, (14, 48, 58))
    drain(fx.controller)
    expected = fx.logic.clicks(fx.volume, fx.segmentation, fx.a)
    assert len(expected) == 3


def test_switching_segment_while_placing_moves_placement_to_the_new_segment(fx):
    interaction = fx.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
    selection = fx.scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    fx.controller.select(fx.volume, fx.segmentation, fx.a)
    assert fx.controller.start_placing(positive=False)
    _, negative_a = fx.controller.prompt_nodes()
    assert interaction.GetCurrentInteractionMode() == interaction.Place
    assert selection.GetActivePlaceNodeID() == negative_a.GetID() and fx.controller.placing is False
    fx.controller.select(fx.volume, fx.segmentation, fx.b)
    _, negative_b = fx.controller.prompt_nodes()
    assert selection.GetActivePlaceNodeID() == negative_b.GetID()  # the next click lands in B's visible list
    assert interaction.GetCurrentInteractionMode() == interaction.Place and fx.controller.placing is False
    assert negative_b.GetDisplayVisibility() and not negative_a.GetDisplayVisibility()
    fx.controller.stop_placing()
    assert interaction.GetCurrentInteractionMode() != interaction.Place and fx.controller.placing is None


class GatedLogic(InteractiveSegmentationLogic):
    """The real logic, whose model load waits for a gate (a model still loading when the scene closes)."""

    def __init__(self, *args, **kwargs):
        InteractiveSegmentationLogic.__init__(self, *args, **kwargs)
        self.gate = threading.Event()

    def load_model(self, progress=None):
        self.gate.wait(60)
        return InteractiveSegmentationLogic.load_model(self, progress)


def test_closing_the_scene_while_the_model_loads_raises_nothing(tiny_checkpoint, ct_3mm_path):
    logic = GatedLogic(checkpoint=tiny_checkpoint, device="cpu", max_rois=1)
    fx = Fixture(tiny_checkpoint, ct_3mm_path, logic=logic)
    fx.controller.select(fx.volume, fx.segmentation, fx.a)
    positive, _ = fx.controller.prompt_nodes()
    fx.click(positive, (15, 50, 60))  # waits for the model
    fx.controller.poll()
    fx.scene.Clear(0)  # File > Close scene
    assert fx.controller.segmentation_node is None and not fx.controller.ready()
    logic.gate.set()
    drain(fx.controller)  # raises nothing: the waiting click was dropped with its nodes
    assert fx.segment_jobs() == [] and not fx.view.errors
    assert logic.model_loaded  # the model load itself was not wasted
    fx.controller.close()
    fx.jobs.shutdown()


def test_closing_the_scene_with_a_segment_job_pending_raises_nothing(fx):
    fx.controller.select(fx.volume, fx.segmentation, fx.a)
    fx.controller.load_model()
    drain(fx.controller)
    positive, _ = fx.controller.prompt_nodes()
    fx.click(positive, (15, 50, 60))
    assert fx.jobs.busy()
    fx.scene.Clear(0)
    drain(fx.controller)
    assert not fx.view.errors and not fx.controller.ready()


def test_removing_the_volume_drops_its_jobs_and_sessions(fx):
    fx.controller.select(fx.volume, fx.segmentation, fx.a)
    fx.controller.load_model()
    drain(fx.controller)
    positive, _ = fx.controller.prompt_nodes()
    fx.click(positive, (15, 50, 60))
    fx.scene.RemoveNode(fx.volume)
    drain(fx.controller)
    assert not fx.view.errors and fx.controller.volume_node is None and not fx.controller.ready()
    assert fx.segmentation.GetSegmentation().GetSegment(fx.a).GetRepresentation("Binary labelmap") is not None
    assert not fx.logic._states  # noqa: SLF001 - the sessions built on the volume are gone


def test_reset_is_undoable_and_undo_redo_recompute(fx):
    fx.controller.select(fx.volume, fx.segmentation, fx.other)  # a segment with content: reset restores it
    original = fx.mask(fx.other)
    positive, negative = fx.controller.prompt_nodes()
    fx.click(positive, (15, 50, 60))
    drain(fx.controller)
    fx.click(negative, (15, 60, 75))
    drain(fx.controller)
    two_clicks = fx.mask(fx.other)
    assert fx.controller.can_undo() and not fx.controller.can_redo()

    assert fx.controller.undo()
    drain(fx.controller)
    assert negative.GetNumberOfControlPoints() == 0 and fx.controller.can_redo()
    assert fx.controller.redo()
    drain(fx.controller)
    assert negative.GetNumberOfControlPoints() == 1
    np.testing.assert_array_equal(fx.mask(fx.other), two_clicks)

    jobs_before = len(fx.jobs.submitted)
    assert fx.controller.reset()
    assert positive.GetNumberOfControlPoints() == 0 and negative.GetNumberOfControlPoints() == 0
    np.testing.assert_array_equal(fx.mask(fx.other), original)
    assert len(fx.jobs.submitted) == jobs_before  # removing the points did not trigger a recomputation
    assert fx.controller.can_undo()
    assert fx.controller.undo()  # undo the reset: the points come back and the segment is recomputed
    drain(fx.controller)
    assert positive.GetNumberOfControlPoints() == 1 and negative.GetNumberOfControlPoints() == 1
    np.testing.assert_array_equal(fx.mask(fx.other), two_clicks)
    assert not fx.view.errors


def test_reset_drops_a_result_still_on_its_way(fx):
    fx.controller.select(fx.volume, fx.segmentation, fx.a)
    fx.controller.load_model()
    drain(fx.controller)
    positive, _ = fx.controller.prompt_nodes()
    fx.click(positive, (15, 50, 60))
    fx.controller.reset()
    drain(fx.controller)
    assert fx.mask(fx.a) is None  # the segment was empty before the first point, and stays so


def test_model_loading_warms_the_model_up(tiny_checkpoint, ct_3mm_path):
    calls = []

    class SpyLogic(InteractiveSegmentationLogic):
        def warm_up(self):
            calls.append(threading.current_thread().name)
            return InteractiveSegmentationLogic.warm_up(self)

    fx = Fixture(tiny_checkpoint, ct_3mm_path, logic=SpyLogic(checkpoint=tiny_checkpoint, device="cpu"))
    fx.controller.load_model()
    drain(fx.controller)
    assert fx.logic.model_loaded and calls and calls[0] != threading.current_thread().name
    assert any(text.startswith("Model loaded") for text in fx.view.statuses)
    fx.jobs.shutdown()


def test_controller_module_needs_no_qt_and_no_slicer_application():
    import ast
    from pathlib import Path

    import SAMMed3DSlicerLib.controller as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"qt", "ctk", "slicer", "slicer.util"}
    assert slicer  # the tests themselves use real MRML
