"""Every decision of the interactive module, free of Qt and of ``slicer.app``: MRML events -> background jobs ->
segment updates. The Slicer widget and the web front end (``sammed3d web``) both drive one of these.

Public API (all calls from the thread that owns the scene: Slicer's main thread, the web server's loop thread)::

    controller = InteractiveSegmentationController(logic, jobs, view, scene)
    controller.select(volume_node, segmentation_node, segment_id)   # whenever the user's selection changes
    controller.start_placing(positive=True) / stop_placing()          # place mode into the segment's point list
    controller.placing                                                # True (positive), False (negative), None
    controller.start_placing_box() / controller.placing_box           # draw the segment's box (ROI markup)
    controller.load_model()                                           # background load, GIL-free encoder, warm-up
    controller.set_engine(server=None, token=None)                    # this computer, or a `sammed3d serve` URL
    controller.request_segmentation()                                 # recompute the selected segment (normally
                                                                      # triggered by the point lists' events)
    controller.undo() / redo() / reset() / new_segment()
    controller.can_undo() / can_redo() / ready()
    controller.poll()                                                 # deliver background results; True while busy
    controller.close()                                                # remove observers, drop pending results

The collaborators are injected:

- ``logic``: :class:`~SAMMed3DSlicerLib.interactive_logic.InteractiveSegmentationLogic` (prepare / compute / apply,
  undo / redo / reset on MRML), local or remote;
- ``jobs``: a :class:`~SAMMed3DSlicerLib.background.BackgroundJobs`-like runner (``submit(key, function, on_done,
  on_error, on_poll=None)``, ``invalidate(key=None, predicate=None)``, ``busy(key=None)``, ``poll()``);
- ``view``: a :class:`ControllerView` (status line, error dialog, progress, "state changed", "start polling",
  dependency installation), implemented by each front end.

Decisions made here (each tested on real MRML in Testing/test_slicer_controller.py):

- Work is triggered by a *defined* control point being placed, moved (end of interaction) or removed; the cursor's
  preview point coming and going, or any event that leaves the list of clicks unchanged, triggers nothing.
- The segment's box (an ROI markup) is a prompt too: drawn (place mode ends), changed at the end of an interaction
  (handles released) or changed outside any interaction (e.g. from Python), it triggers one computation; a box
  still being drawn or dragged triggers nothing. MedSAM segments
  the box's slices; SAM-Med3D gets a positive click at its centre, before the points.
- Jobs are newest-wins per segment: a click in segment B never drops segment A's pending result.
- Switching segment while placing moves place mode to the new segment's point list of the same polarity.
- Closing the scene invalidates every segmentation job (the model keeps loading) and raises nothing; removing the
  volume or the segmentation drops its jobs and sessions.
- Reset removes the segment's points and restores its content from before the first point; it is undoable (undo
  re-places the points and recomputes).
- Switching the engine (this computer <-> a server, or another server / token) drops every pending job (the model
  load too), keeps each segment's points and content, recomputes on the new engine the segments whose results were
  pending, and replays a segment's points on the new engine at its next change. A server engine needs no PyTorch
  here: loading it only connects (and checks the token), and never offers to install packages.
"""
from __future__ import annotations

import logging
from typing import Callable, Hashable, Optional, Tuple

from .box_prompt import box_node, box_signature, remove_box
from .markups import add_point_world, current_clicks
from .prompt_nodes import prompt_nodes, show_only_segment_prompts

log = logging.getLogger(__name__)

#: Key of the model-loading job.
MODEL_KEY = "model"

#: Point-list events that may change the clicks (filtered by comparing the click list).
_POINT_EVENTS = ("PointPositionDefinedEvent", "PointPositionUndefinedEvent", "PointEndInteractionEvent",
                 "PointRemovedEvent")


def segment_key(segmentation_node, segment_id) -> Tuple[str, str, str]:
    """The job key of a segment: newest wins per segment."""
    return ("segment", segmentation_node.GetID(), segment_id)


class ControllerView(object):
    """What the controller asks of a front end. Subclass and override; the defaults do nothing."""

    def status(self, text: str) -> None:
        """Show a one-line status (progress, timings, hints)."""

    def error(self, message: str) -> None:
        """Show an error the user must see (a dialog in Slicer)."""

    def progress(self, text: Optional[str], fraction: Optional[float] = None) -> None:
        """Show a progress indicator (``fraction`` in 0..1, None: busy); ``text`` None closes it."""

    def changed(self) -> None:
        """The controller's state changed (selection, undo / redo availability, placing): refresh the GUI."""

    def start_polling(self) -> None:
        """Call :meth:`InteractiveSegmentationController.poll` periodically until it returns False."""

    def install_dependencies(self, then: Callable[[], None]) -> None:
        """Python packages are missing: offer to install them (outside any MRML/VTK callback) and call ``then()``
        once they are importable. The default reports them as missing."""
        self.error("SAM-Med3D needs PyTorch and a few other Python packages that are not installed.")


def _format_timings(timings) -> str:
    order = ("total", "embedding", "encoder", "decoder", "read", "write")
    keys = [key for key in order if key in timings] + sorted(key for key in timings if key not in order)
    return ", ".join("%s %.2f s" % (key, timings[key]) for key in keys)


def _click_signature(clicks) -> tuple:
    """What identifies a click list: each point's node, ID, polarity and world position (to 1 um)."""
    return tuple(sorted((click.key, click.positive, tuple(round(v, 3) for v in click.world)) for click in clicks))


class InteractiveSegmentationController(object):
    """Front-end independent control of interactive segmentation (see the module docstring)."""

    def __init__(self, logic, jobs, view: Optional[ControllerView] = None, scene=None,
                 dependencies_missing: Optional[Callable[[], bool]] = None):
        self.logic = logic
        self.jobs = jobs
        self.view = view if view is not None else ControllerView()
        self.scene = None
        self.volume_node = None
        self.segmentation_node = None
        self.segment_id = None
        self._dependencies_missing = dependencies_missing or _dependencies_missing
        self._scene_tags = []
        self._singleton_tags = []  # (node, tag)
        self._point_tags = []  # (node, tag)
        self._observed_points = ()
        self._requested = {}  # segment key -> click signature last sent to the model
        self._job_volume = {}  # segment key -> volume node ID of its newest job
        self._job_nodes = {}  # segment key -> (volume, segmentation, segment ID) of its newest job
        self._waiting = {}  # segment key -> (volume, segmentation, segment ID) waiting for the model
        self._reset_undo = {}  # segment key -> (clicks, box) removed by the last reset (undo re-places them)
        self._quiet = 0  # > 0 while the controller itself edits point lists
        self._model_job_live = False  # a model load for the current engine is queued or running
        self.on_model_loaded = None  # optional callback(seconds) for front ends
        if scene is not None:
            self.set_scene(scene)

    # ---- scene ---------------------------------------------------------------------------------------------------
    def set_scene(self, scene) -> None:
        """Observe ``scene`` (close, node removal)."""
        for tag in self._scene_tags:
            self.scene.RemoveObserver(tag)
        for node, tag in self._singleton_tags:
            node.RemoveObserver(tag)
        self._scene_tags, self._singleton_tags = [], []
        self.scene = scene
        if scene is None:
            return
        import vtk

        self._scene_tags.append(scene.AddObserver(scene.StartCloseEvent, self._on_scene_start_close))

        @vtk.calldata_type(vtk.VTK_OBJECT)
        def node_about_to_be_removed(caller, event, node):
            self.on_node_removed(node)

        self._node_removed_callback = node_about_to_be_removed  # keep the decorated callable alive
        self._scene_tags.append(scene.AddObserver(scene.NodeAboutToBeRemovedEvent, node_about_to_be_removed))
        for singleton in ("vtkMRMLInteractionNodeSingleton", "vtkMRMLSelectionNodeSingleton"):
            node = scene.GetNodeByID(singleton)  # place mode on / off, active place node: refresh the buttons
            if node is not None:
                self._singleton_tags.append((node, node.AddObserver(vtk.vtkCommand.ModifiedEvent,
                                                                    self._on_place_state_modified)))

    def close(self) -> None:
        """Stop observing and drop every pending result (the front end goes away)."""
        self._observe_points(None, None)
        self.set_scene(None)
        self.jobs.invalidate()
        self._model_job_live = False
        self._waiting.clear()

    def _on_place_state_modified(self, caller=None, event=None) -> None:
        placing = (self.placing, self.placing_box)
        previous = getattr(self, "_last_placing", (None, False))
        if placing != previous:
            self._last_placing = placing
            if previous[1] and not placing[1]:  # the box is drawn (place mode ended): its final geometry is a prompt
                self._restore_box_if_not_drawn()
                self._on_points_event()
            self.view.changed()

    def _on_scene_start_close(self, caller=None, event=None) -> None:
        """Scene close: segment jobs become stale, sessions are forgotten, nothing is selected (the model stays)."""
        self.stop_placing()
        self.jobs.invalidate(predicate=lambda key: key != MODEL_KEY)
        self._waiting.clear()
        self._requested.clear()
        self._reset_undo.clear()
        self._job_volume.clear()
        self._job_nodes.clear()
        self.logic.forget()
        self._set_selection(None, None, None)
        self.view.changed()

    def on_node_removed(self, node) -> None:
        """A node is about to leave the scene: drop what depends on the selected volume or segmentation."""
        if node is None:
            return
        node_id = node.GetID()
        if node is self.volume_node or node_id in self._job_volume.values():
            stale = [key for key, volume_id in self._job_volume.items() if volume_id == node_id]
            self.jobs.invalidate(predicate=lambda key: key in stale)
            for key in stale:
                self._job_nodes.pop(key, None)
            for key in [k for k, waiting in self._waiting.items() if waiting[0] is node]:
                del self._waiting[key]
            self.logic.forget_volume(node)
            if node is self.volume_node:
                self.stop_placing()
                self._set_selection(None, self.segmentation_node, self.segment_id)
            self.view.changed()
        elif node is self.segmentation_node or any(key[1] == node_id for key in self._job_volume):
            self.jobs.invalidate(predicate=lambda key: isinstance(key, tuple) and key[1] == node_id)
            for key in [k for k in self._job_nodes if k[1] == node_id]:
                del self._job_nodes[key]
            for key in [k for k in self._waiting if k[1] == node_id]:
                del self._waiting[key]
            self.logic.forget(node)
            if node is self.segmentation_node:
                self.stop_placing()
                self._set_selection(self.volume_node, None, None)
            self.view.changed()

    # ---- selection -----------------------------------------------------------------------------------------------
    def select(self, volume_node, segmentation_node, segment_id) -> None:
        """The user selected a volume, a segmentation and a segment (any may be None).

        Shows only that segment's point lists and observes them; if points were being placed, placing continues
        in the new segment's list of the same polarity.
        """
        segment_id = segment_id or None
        if segmentation_node is not None and segment_id is not None and \
                segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
            segment_id = None
        placing, placing_box = self.placing, self.placing_box
        self._set_selection(volume_node, segmentation_node, segment_id)
        if placing is not None or placing_box:
            if not self.ready():
                self.stop_placing()
            elif placing_box:
                self.start_placing_box()
            else:
                self.start_placing(placing)
        self.view.changed()

    def _set_selection(self, volume_node, segmentation_node, segment_id) -> None:
        self.volume_node, self.segmentation_node, self.segment_id = volume_node, segmentation_node, segment_id
        if segmentation_node is not None and segmentation_node.GetScene() is not None:
            show_only_segment_prompts(segmentation_node, segment_id)
        if self.ready():
            positive, negative = prompt_nodes(segmentation_node, segment_id)
            # The segment shows what its points gave (a saved scene, another front end): only a change of the
            # click list from here on is work.
            self._requested.setdefault(segment_key(segmentation_node, segment_id),
                                       self._prompt_signature(volume_node, segmentation_node, segment_id))
            self._observe_points(positive, negative, box_node(segmentation_node, segment_id))
        else:
            self._observe_points(None, None)

    @staticmethod
    def _prompt_signature(volume_node, segmentation_node, segment_id) -> tuple:
        """The segment's clicks and box: work is due when this changes."""
        positive, negative = prompt_nodes(segmentation_node, segment_id)
        return (_click_signature(current_clicks(volume_node, positive, negative)),
                box_signature(box_node(segmentation_node, segment_id)))

    def ready(self) -> bool:
        """A volume, a segmentation and one of its segments are selected."""
        return bool(self.volume_node is not None and self.segmentation_node is not None and self.segment_id)

    def prompt_nodes(self):
        """(positive, negative) point lists of the selected segment (created on first use); (None, None)."""
        if self.segmentation_node is None or not self.segment_id:
            return None, None
        return prompt_nodes(self.segmentation_node, self.segment_id)

    # ---- point lists ---------------------------------------------------------------------------------------------
    def _observe_points(self, positive, negative, box=None) -> None:
        nodes = tuple(node for node in (positive, negative, box) if node is not None)
        if nodes == self._observed_points:
            return
        for node, tag in self._point_tags:
            node.RemoveObserver(tag)
        self._point_tags = []
        self._box_interacting = False
        for node in nodes:
            if node is box:
                continue
            for name in _POINT_EVENTS:
                self._point_tags.append((node, node.AddObserver(getattr(node, name), self._on_points_event)))
        if box is not None:
            def interaction_started(caller=None, event=None):
                self._box_interacting = True

            def interaction_ended(caller=None, event=None):
                self._box_interacting = False
                self._on_points_event()

            def changed(caller=None, event=None):
                if not self._box_interacting and not self.placing_box:  # not while dragging or drawing
                    self._on_points_event()

            for event, callback in ((box.PointStartInteractionEvent, interaction_started),
                                    (box.PointEndInteractionEvent, interaction_ended),
                                    (box.PointModifiedEvent, changed), (box.PointPositionDefinedEvent, changed),
                                    (box.PointPositionUndefinedEvent, changed), (box.PointRemovedEvent, changed)):
                self._point_tags.append((box, box.AddObserver(event, callback)))
        self._observed_points = nodes

    def _on_points_event(self, caller=None, event=None) -> None:
        if self._quiet:
            return
        self.request_segmentation(only_if_changed=True)

    # ---- placing ---------------------------------------------------------------------------------------------------
    def _scene(self):
        if self.scene is not None:
            return self.scene
        return self.segmentation_node.GetScene() if self.segmentation_node is not None else None

    def _interaction_and_selection(self):
        scene = self._scene()
        if scene is None:
            return None, None
        return (scene.GetNodeByID("vtkMRMLInteractionNodeSingleton"),
                scene.GetNodeByID("vtkMRMLSelectionNodeSingleton"))

    @property
    def placing(self) -> Optional[bool]:
        """True / False while placing positive / negative points of the selected segment, else None."""
        interaction, selection = self._interaction_and_selection()
        if interaction is None or selection is None or interaction.GetCurrentInteractionMode() != interaction.Place:
            return None
        active = selection.GetActivePlaceNodeID()
        for node, positive in zip(self._observed_points, (True, False)):
            if node is not None and node.GetID() == active:
                return positive
        return None

    @property
    def placing_box(self) -> bool:
        """True while drawing the selected segment's box."""
        interaction, selection = self._interaction_and_selection()
        if interaction is None or selection is None or interaction.GetCurrentInteractionMode() != interaction.Place \
                or not self.ready():
            return False
        node = box_node(self.segmentation_node, self.segment_id, create=False)
        return node is not None and node.GetID() == selection.GetActivePlaceNodeID()

    def start_placing_box(self) -> bool:
        """Draw the selected segment's box in a slice view (a new box replaces the previous one)."""
        if not self.ready():
            return False
        interaction, selection = self._interaction_and_selection()
        if interaction is None or selection is None:
            return False
        node = box_node(self.segmentation_node, self.segment_id)
        self._box_before_placing = (node, tuple(node.GetCenter()), tuple(node.GetSize())) if box_signature(node) \
            else None
        self._quiet += 1
        try:
            remove_box(node)  # the segment keeps what the old box gave until the new one is drawn
        finally:
            self._quiet -= 1
        selection.SetReferenceActivePlaceNodeClassName(node.GetClassName())
        selection.SetActivePlaceNodeID(node.GetID())
        interaction.SetPlaceModePersistence(0)
        interaction.SetCurrentInteractionMode(interaction.Place)
        self.view.changed()
        return True

    def _restore_box_if_not_drawn(self) -> None:
        """Place mode ended without a new box: the previous box comes back (nothing to recompute)."""
        saved, self._box_before_placing = getattr(self, "_box_before_placing", None), None
        if saved is None or saved[0].GetScene() is None or box_signature(saved[0]):
            return
        node, centre, size = saved
        self._quiet += 1
        try:
            remove_box(node)  # a half-drawn box, if any
            node.SetSize(*size)
            node.SetCenter(*centre)
        finally:
            self._quiet -= 1

    def start_placing(self, positive: bool = True) -> bool:
        """Enter persistent place mode into the selected segment's positive (or negative) point list."""
        if not self.ready():
            return False
        interaction, selection = self._interaction_and_selection()
        if interaction is None or selection is None:
            return False
        node = self.prompt_nodes()[0 if positive else 1]
        selection.SetReferenceActivePlaceNodeClassName(node.GetClassName())
        selection.SetActivePlaceNodeID(node.GetID())
        interaction.SetPlaceModePersistence(1)
        interaction.SetCurrentInteractionMode(interaction.Place)
        self.view.changed()
        return True

    def stop_placing(self) -> None:
        """Leave place mode if it is placing into one of this module's point lists."""
        interaction, selection = self._interaction_and_selection()
        if interaction is None or interaction.GetCurrentInteractionMode() != interaction.Place:
            return
        active = selection.GetActivePlaceNodeID() if selection is not None else None
        node = self._scene().GetNodeByID(active) if active else None
        if node is not None and node.GetAttribute("SAMMed3D.Segment") is None:
            return  # someone else's place mode
        interaction.SetCurrentInteractionMode(interaction.ViewTransform)

    # ---- engine and model --------------------------------------------------------------------------------------------
    @property
    def engine_is_remote(self) -> bool:
        return bool(getattr(self.logic, "server", None))

    def set_engine(self, server: Optional[str] = None, token: Optional[str] = None) -> bool:
        """Compute on this computer (server None) or on a `sammed3d serve` server. True when the engine changed.

        Pending work is dropped (the model load too: it was for the old engine); segments whose result was pending
        are recomputed on the new engine; every segment keeps its points and content, and its next computation
        replays its points on the new engine."""
        if (server or None, token or None) == (self.logic.server, self.logic.token):
            return False
        pending = dict(self._waiting)
        pending.update((key, nodes) for key, nodes in self._job_nodes.items() if self.jobs.busy(key))
        self.jobs.invalidate()
        self._model_job_live = False
        self.view.progress(None)
        self.logic.set_engine(server=server, token=token)
        self._waiting = pending
        self.view.status("Engine: %s." % (server or "this computer"))
        if pending:
            self.load_model()
        self.view.changed()
        return True

    @property
    def model_loading(self) -> bool:
        """A model load for the current engine is under way (one for a previous engine does not count)."""
        return self._model_job_live and self.jobs.busy(MODEL_KEY)

    def load_model(self) -> bool:
        """Load the model in the background (after installing missing dependencies), then warm it up with one
        encoder pass so that the first click costs what later first clicks cost. True when already loaded."""
        if self.logic.model_loaded:
            return True
        if self.model_loading:
            return False
        remote = self.engine_is_remote
        if not remote and self._dependencies_missing():  # a server engine needs no PyTorch here
            self.view.install_dependencies(self.load_model)
            return False
        import time

        started = time.perf_counter()
        download = {}

        def progress(done, total):  # worker thread: only store, the polling thread shows it
            download["state"] = (done, total)

        def show_download():
            if "state" in download:
                done, total = download["state"]
                self.view.progress("Downloading the SAM-Med3D weights: %.0f / %s MB" % (
                    done / 1e6, "%.0f" % (total / 1e6) if total else "?"), done / total if total else None)

        def load_and_warm_up():
            from .gil_free import release_gil_in_encoder

            release_gil_in_encoder(self.logic.load_model(progress=progress))  # full speed under Slicer's loop
            self.logic.warm_up()  # also traces the encoder

        def loaded(_):
            self._model_job_live = False
            seconds = time.perf_counter() - started
            self.view.progress(None)
            self.view.status("Connected to %s in %.1f s." % (self.logic.server, seconds) if remote
                             else "Model loaded in %.1f s." % seconds)
            if self.on_model_loaded is not None:
                self.on_model_loaded(seconds)
            waiting, self._waiting = self._waiting, {}
            for volume_node, segmentation_node, segment_id in waiting.values():
                self._submit(volume_node, segmentation_node, segment_id)
            self.view.changed()

        def failed(error):
            self._model_job_live = False
            self.view.progress(None)
            self._waiting.clear()
            self._report(error)

        self.view.progress("Connecting to %s..." % self.logic.server if remote else "Loading the SAM-Med3D weights...")
        self.jobs.submit(MODEL_KEY, load_and_warm_up, loaded, failed, show_download)
        self._model_job_live = True
        self.view.start_polling()
        return False

    # ---- segmentation ------------------------------------------------------------------------------------------------
    def request_segmentation(self, only_if_changed: bool = False) -> bool:
        """Recompute the selected segment from its points in the background (newest wins for this segment).

        only_if_changed: do nothing when the clicks equal those last sent (point-list events). True if submitted.
        """
        if not self.ready() or self.volume_node.GetScene() is None:
            return False
        key = segment_key(self.segmentation_node, self.segment_id)
        signature = self._prompt_signature(self.volume_node, self.segmentation_node, self.segment_id)
        if only_if_changed and self._requested.get(key) == signature:
            return False
        self._requested[key] = signature
        if any(signature):
            self._reset_undo.pop(key, None)  # new clicks: the reset is no longer undoable
        if not self.logic.model_loaded:
            self._waiting[key] = (self.volume_node, self.segmentation_node, self.segment_id)
            self.load_model()
            return True
        return self._submit(self.volume_node, self.segmentation_node, self.segment_id)

    def _submit(self, volume_node, segmentation_node, segment_id) -> bool:
        if volume_node.GetScene() is None or segmentation_node.GetScene() is None:
            return False
        import time

        key = segment_key(segmentation_node, segment_id)
        positive, negative = prompt_nodes(segmentation_node, segment_id)
        try:
            request = self.logic.prepare(volume_node, segmentation_node, segment_id, positive, negative,
                                         box_node=box_node(segmentation_node, segment_id))
        except Exception as error:  # noqa: BLE001 - reported to the user
            self._report(error)
            return False
        started = time.perf_counter()
        self.view.status("Segmenting (%d points%s)..." % (len(request.clicks), ", a box" if request.box else ""))

        def done(mask):
            if volume_node.GetScene() is None or segmentation_node.GetScene() is None or \
                    segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
                return  # the nodes or the segment went away meanwhile
            try:
                update = self.logic.apply(request, mask, volume_node, segmentation_node)
            except Exception as error:  # noqa: BLE001
                self._report(error)
                return
            update.timings["total"] = time.perf_counter() - started + request.read_seconds
            self.view.status("%d points%s; %s" % (update.clicks, ", a box" if request.box else "",
                                                   _format_timings(update.timings)))
            self.view.changed()

        def show_progress():  # MedSAM going through the box's slices (set by the worker, shown from here)
            if getattr(request, "progress", None):
                self.view.status("MedSAM: %d / %d slices..." % request.progress)

        self._job_volume[key] = volume_node.GetID()
        self._job_nodes[key] = (volume_node, segmentation_node, segment_id)
        self.jobs.submit(key, lambda: self.logic.compute(request), done, self._report, show_progress)
        self.view.start_polling()
        return True

    def poll(self) -> bool:
        """Deliver finished background work (call periodically from the scene's thread); True while busy."""
        return self.jobs.poll()

    def _report(self, error) -> None:
        from sammed3d.errors import PromptError, SamMed3DError

        if isinstance(error, PromptError):
            self.view.status(str(error))  # a hint (e.g. "place a positive point first"), not a failure
            return
        if isinstance(error, SamMed3DError):
            message = str(error)
        else:
            log.error("SAM-Med3D failed", exc_info=(type(error), error, error.__traceback__))
            message = "SAM-Med3D failed: %s (details in the Python console)" % error
        self.view.status(message)
        self.view.error(message)

    # ---- undo / redo / reset / new segment ----------------------------------------------------------------------------
    def _key(self):
        return segment_key(self.segmentation_node, self.segment_id)

    def can_undo(self) -> bool:
        if not self.ready():
            return False
        return (self.logic.can_undo(self.volume_node, self.segmentation_node, self.segment_id)
                or self._key() in self._reset_undo)

    def can_redo(self) -> bool:
        return self.ready() and self.logic.can_redo(self.volume_node, self.segmentation_node, self.segment_id)

    def undo(self) -> bool:
        """Remove the last point and recompute; right after a reset, put the reset points back."""
        if not self.ready():
            return False
        self._quiet += 1
        try:
            if self.logic.can_undo(self.volume_node, self.segmentation_node, self.segment_id):
                done = self.logic.remove_last_click(self.volume_node, self.segmentation_node, self.segment_id)
            else:
                done = self._undo_reset()
        finally:
            self._quiet -= 1
        if done:
            self.request_segmentation()
        self.view.changed()
        return done

    def redo(self) -> bool:
        """Put back the last undone point and recompute."""
        if not self.ready():
            return False
        self._quiet += 1
        try:
            done = self.logic.restore_click(self.volume_node, self.segmentation_node, self.segment_id)
        finally:
            self._quiet -= 1
        if done:
            self.request_segmentation()
        self.view.changed()
        return done

    def reset(self) -> bool:
        """Remove the segment's points and restore its content from before the first point (undoable)."""
        if not self.ready():
            return False
        key = self._key()
        positive, negative = self.prompt_nodes()
        clicks = self.logic.clicks(self.volume_node, self.segmentation_node, self.segment_id) or \
            current_clicks(self.volume_node, positive, negative)
        box = box_node(self.segmentation_node, self.segment_id)
        box_geometry = (tuple(box.GetCenter()), tuple(box.GetSize())) if box_signature(box) else None
        self.jobs.invalidate(key)  # a result still on its way must not overwrite the reset
        self._waiting.pop(key, None)
        self._quiet += 1
        try:
            remove_box(box)
            self.logic.reset(self.volume_node, self.segmentation_node, self.segment_id, positive, negative)
        finally:
            self._quiet -= 1
        self._requested[key] = ((), ())
        if clicks or box_geometry:
            self._reset_undo[key] = (list(clicks), box_geometry)
        self.view.status("Segment reset (undo puts its points back).")
        self.view.changed()
        return True

    def _undo_reset(self) -> bool:
        clicks, box_geometry = self._reset_undo.pop(self._key(), ([], None))
        if not clicks and not box_geometry:
            return False
        if box_geometry:
            box = box_node(self.segmentation_node, self.segment_id)
            box.SetCenter(*box_geometry[0])
            box.SetSize(*box_geometry[1])
        scene = self.segmentation_node.GetScene()
        for click in clicks:  # chronological: the first positive point centres the model's region again
            node = scene.GetNodeByID(click.key[0]) if scene is not None else None
            if node is not None:
                add_point_world(node, click.world)
        return True

    def new_segment(self, name: Optional[str] = None) -> Optional[str]:
        """Add an empty segment to the selected segmentation, select it and start placing positive points."""
        if self.segmentation_node is None:
            return None
        segmentation = self.segmentation_node.GetSegmentation()
        segment_id = segmentation.AddEmptySegment("", name) if name else segmentation.AddEmptySegment()
        placing = self.placing
        self.select(self.volume_node, self.segmentation_node, segment_id)
        if self.ready() and placing is None:
            self.start_placing(True)
        return segment_id


def _dependencies_missing() -> bool:
    from .dependencies import missing_packages

    torch_missing, others = missing_packages()
    return bool(torch_missing or others)
