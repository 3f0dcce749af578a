"""Interactive SAM-Med3D segmentation on MRML nodes: clicks in markups nodes -> one segment of a segmentation.

One SAM-Med3D session per (volume, segmentation, segment): switching segments keeps each one's clicks and cached
image embedding. A segment that already has content when its session starts seeds the session (mask prompt)
and is restored by :meth:`InteractiveSegmentationLogic.reset`.

The work is split in three steps so that a GUI can run the middle one off the main thread:
``prepare`` (reads MRML, main thread) -> ``compute`` (model only, no MRML, any thread) -> ``apply`` (writes MRML,
main thread). :meth:`segment` runs all three.
"""
from __future__ import annotations

import threading
import time
from typing import Dict, List, Optional

from sammed3d.errors import PromptError

from .markups import Click, add_point_world, chronological_clicks, current_clicks, remove_click
from .segment_io import clear_segment, read_segment_in_volume_grid, write_mask_to_segment
from .volume_conversion import volume_to_sitk


#: ROIs one structure may span when the module follows structures larger than one 192 mm ROI.
LARGE_OBJECT_MAX_ROIS = 6


def takes_boxes(model) -> bool:
    """True for a box model (MedSAM, local or on a server), False for SAM-Med3D (points; a box is its centre)."""
    info = getattr(model, "info", None)
    if isinstance(info, dict):  # a server connection: the server says which model it runs
        return info.get("family") == "medsam"
    return hasattr(model, "decode_boxes")


def session_order(clicks: List[Click]) -> list:
    """(RAS, positive) pairs for the session, the first positive click first (it centres the model's ROI), the
    others in the order they were placed, as `sammed3d segment` does. Appending a click keeps it an append."""
    pairs = [(click.ras, click.positive) for click in clicks]
    first = next((index for index, (_, positive) in enumerate(pairs) if positive), 0)
    return [pairs[first]] + pairs[:first] + pairs[first + 1:] if pairs else pairs


class SegmentUpdate(object):
    """What one ``segment`` call did: the segment, the number of clicks, the timings in seconds."""

    def __init__(self, segment_id: str, clicks: int, timings: Dict[str, float]):
        self.segment_id = segment_id
        self.clicks = clicks
        self.timings = timings

    def __repr__(self):
        return "SegmentUpdate(%r, clicks=%d, timings=%r)" % (self.segment_id, self.clicks, self.timings)


class _SegmentState(object):
    """Per-segment session: the SAM-Med3D session, the clicks it has seen (in order) and the original content."""

    def __init__(self, session, seed):
        self.session = session  # None after an engine / model change: re-created (seeded, clicks replayed)
        self.seed = seed  # SimpleITK mask of the segment before the first click, or None
        self.clicks = []  # type: List[Click]  # chronological, as last read from the markups nodes
        self.redo = []  # type: List[Click]  # undone clicks, last undone last
        self.restoring = False  # True while a redo re-creates a control point


class Request(object):
    """The MRML-free input of one computation, made by :meth:`InteractiveSegmentationLogic.prepare`."""

    def __init__(self, state: _SegmentState, clicks: List[Click], segment_id: str, read_seconds: float):
        self.state = state
        self.session = state.session  # the session at prepare time (an engine change replaces the state's)
        self.clicks = clicks
        self.segment_id = segment_id
        self.read_seconds = read_seconds
        self.box = None  # the segment's box prompt (sammed3d.prompts.Box, volume-local RAS), or None
        self.progress = None  # (slices done, slices in the box) while MedSAM works (written by the computing thread)
        self.takes_boxes = False  # the session is MedSAM's (a box prompt; points are not used)


class InteractiveSegmentationLogic(object):
    """SAM-Med3D clicks -> segment, on MRML nodes.

    checkpoint: "turbo" (the official SAM-Med3D-turbo weights, downloaded once) or a local weights file;
    device: "auto", "cpu", "cuda", ... The model is loaded on first use (or by :meth:`load_model`).
    server, token: compute on a `sammed3d serve` server ("http://host:port") instead (no PyTorch needed here);
    checkpoint and device are then the server's business.
    session_options: passed to :class:`sammed3d.session.InteractiveSession` (e.g. ``max_rois=1`` for the official
    single 128^3 ROI, ``mapping="official"``, ``precision="bf16"``).
    """

    def __init__(self, checkpoint: str = "turbo", device: str = "auto", server: Optional[str] = None,
                 token: Optional[str] = None, **session_options):
        self.checkpoint = checkpoint
        self.device = device
        self.server = server or None
        self.token = token or None
        self.session_options = session_options
        self._model = None
        self._model_lock = threading.Lock()
        self._images = {}  # volume node ID -> (image data MTime, SimpleITK image)
        self._states = {}  # (volume ID, segmentation ID, segment ID) -> _SegmentState

    # ---- model -------------------------------------------------------------------------------------------------
    def set_model_options(self, checkpoint: str, device: str) -> None:
        """Change weights or device; the next computation reloads the model and restarts every session."""
        if (checkpoint, device) != (self.checkpoint, self.device):
            self.checkpoint, self.device = checkpoint, device
            self._model = None
            self._restart_sessions()

    def set_engine(self, server: Optional[str] = None, token: Optional[str] = None) -> None:
        """Compute on this computer (server None) or on a `sammed3d serve` server; a change restarts every session
        (the segments keep their content; the next computation replays each segment's clicks on the new engine)."""
        if (server or None, token or None) != (self.server, self.token):
            self.server, self.token = server or None, token or None
            self._model = None
            self._restart_sessions()

    @property
    def engine(self) -> tuple:
        """What the model depends on: (server, token, checkpoint, device)."""
        return (self.server, self.token, self.checkpoint, self.device)

    def _restart_sessions(self) -> None:
        """Drop every model session but keep each segment's clicks, redo history and content from before its first
        click: the next computation opens a new session seeded with that content and replays the clicks."""
        for state in self._states.values():
            state.session = None

    def set_max_rois(self, max_rois: int) -> None:
        """ROIs one object may span (1: the official single ROI); applies to new clicks of every session."""
        self.session_options["max_rois"] = max(1, int(max_rois))
        for state in self._states.values():
            if state.session is not None:
                state.session.max_rois = self.session_options["max_rois"]

    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    def load_model(self, progress=None):
        """Load (download if needed) the weights; thread-safe, done once.

        progress: optional ``progress(bytes_done, bytes_total)`` called during a download (from this thread).
        """
        with self._model_lock:
            model, engine = self._model, self.engine
            if model is None and self.server:
                from sammed3d.remote import connect

                model = connect(self.server, self.token)  # the model is the server's: check it answers
            if model is None:
                import sammed3d

                options = {"progress": progress} if progress is not None else {}
                model = sammed3d.load_model(self.checkpoint, self.device, **options)
            if self.engine == engine:  # not when the engine changed meanwhile (main thread, while this loaded)
                self._model = model
            return model

    def warm_up(self) -> None:
        """One click on a small synthetic image (one encoder and decoder pass): the first real click then costs
        what later first clicks cost. Any thread; touches no MRML. On a server engine: only connect (the server's
        model is warm)."""
        if self.server:
            self.load_model()
            return
        import numpy as np
        import SimpleITK as sitk
        from sammed3d.session import InteractiveSession

        voxels = np.random.default_rng(0).integers(0, 1000, size=(48, 48, 48)).astype(np.int16)
        image = sitk.GetImageFromArray(voxels)
        image.SetSpacing((1.5, 1.5, 1.5))
        centre_lps = image.TransformIndexToPhysicalPoint((24, 24, 24))
        if takes_boxes(self.load_model()):  # MedSAM: one slice, one box
            from sammed3d.medsam.session import MedSamSession
            from sammed3d.prompts import Box

            corner = image.TransformIndexToPhysicalPoint((12, 12, 24))
            MedSamSession(self.load_model(), image, modality="auto").set_box(Box(
                (-corner[0], -corner[1], corner[2]), (-centre_lps[0], -centre_lps[1], centre_lps[2])))
            return
        session = InteractiveSession(self.load_model(), image, **dict(self.session_options, max_rois=1))
        session.set_clicks([((-centre_lps[0], -centre_lps[1], centre_lps[2]), True)])

    # ---- sessions ----------------------------------------------------------------------------------------------
    def _image(self, volume_node):
        mtime = volume_node.GetImageData().GetMTime() if volume_node.GetImageData() is not None else None
        cached = self._images.get(volume_node.GetID())
        if cached is None or cached[0] != mtime:
            cached = (mtime, volume_to_sitk(volume_node))
            self._images[volume_node.GetID()] = cached
            # A changed image invalidates the sessions built on it.
            for key in [k for k in self._states if k[0] == volume_node.GetID()]:
                del self._states[key]
        return cached[1]

    def _state(self, volume_node, segmentation_node, segment_id, create=True) -> Optional[_SegmentState]:
        key = (volume_node.GetID(), segmentation_node.GetID(), segment_id)
        image = self._image(volume_node)
        state = self._states.get(key)
        if create and (state is None or state.session is None):
            if self.server:
                from sammed3d.remote import RemoteSession as Session
            else:
                from sammed3d.session import InteractiveSession as Session

            seed = read_segment_in_volume_grid(segmentation_node, segment_id, volume_node) if state is None \
                else state.seed
            model = self.load_model()
            if takes_boxes(model) and not self.server:
                from sammed3d.medsam.session import MedSamSession

                session = MedSamSession(model, image, modality="auto")
            else:
                session = Session(model, image, **self.session_options)
            if seed is not None and not takes_boxes(model):  # a box's result replaces the segment's content
                session.seed(seed)
            if state is None:
                state = self._states[key] = _SegmentState(session, seed)
            state.session = session
        return state

    def has_session(self, volume_node, segmentation_node, segment_id) -> bool:
        return (volume_node.GetID(), segmentation_node.GetID(), segment_id) in self._states

    def clicks(self, volume_node, segmentation_node, segment_id) -> List[Click]:
        """The segment's clicks in the order they were placed, as last read (empty without a session)."""
        state = self._state(volume_node, segmentation_node, segment_id, create=False)
        return list(state.clicks) if state is not None else []

    def forget_volume(self, volume_node) -> None:
        """Drop the cached image and the sessions of a volume (e.g. it is being removed from the scene)."""
        self._images.pop(volume_node.GetID(), None)
        for key in [k for k in self._states if k[0] == volume_node.GetID()]:
            del self._states[key]

    def forget(self, segmentation_node=None, segment_id=None) -> None:
        """Drop sessions (all, those of a segmentation, or of one segment); the segments keep their content."""
        for key in list(self._states):
            if segmentation_node is not None and key[1] != segmentation_node.GetID():
                continue
            if segment_id is not None and key[2] != segment_id:
                continue
            del self._states[key]

    # ---- the three steps -----------------------------------------------------------------------------------------
    def prepare(self, volume_node, segmentation_node, segment_id, positive_node, negative_node=None,
                box_node=None) -> Request:
        """Read the clicks and the box (world -> volume-local RAS) and the segment's session. Main thread (MRML).

        box_node: the segment's ROI markup (a box prompt: MedSAM segments its slices, SAM-Med3D clicks its centre).
        """
        self.load_model()  # normally loaded already (the widget loads it in the background); not "read" time
        start = time.perf_counter()
        if volume_node is None or segmentation_node is None or not segment_id:
            raise PromptError("Select an input volume, a segmentation and a segment first.")
        if segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
            raise PromptError("The segmentation '%s' has no segment '%s'." % (segmentation_node.GetName(), segment_id))
        state = self._state(volume_node, segmentation_node, segment_id)
        clicks = chronological_clicks(state.clicks, current_clicks(volume_node, positive_node, negative_node))
        known = set(click.key for click in state.clicks)
        if any(click.key not in known for click in clicks) and not state.restoring:
            state.redo = []  # a new click (not a redo) ends the redo history
        state.restoring = False
        state.clicks = clicks
        request = Request(state, clicks, segment_id, 0.0)
        request.takes_boxes = takes_boxes(self.load_model())
        if box_node is not None:
            from .box_prompt import current_box

            request.box = current_box(volume_node, box_node)
        request.read_seconds = time.perf_counter() - start
        return request

    def compute(self, request: Request):
        """Run the model for the request's clicks: the mask (SimpleITK) in the volume's grid. Any thread, no MRML."""
        state, session, box = request.state, request.session, request.box
        if request.takes_boxes:
            if box is not None:
                if hasattr(session, "progress"):  # a local MedSAM session reports each slice
                    session.progress = lambda done, total: setattr(request, "progress", (done, total))
                return session.set_box(box)
            if request.clicks:
                raise PromptError("MedSAM takes a box: draw one with Box (points are for SAM-Med3D).")
            session.reset()
            return state.seed
        if not request.clicks and box is None:
            session.reset()
            if state.seed is not None:
                session.seed(state.seed)
            return state.seed
        if box is None and not any(click.positive for click in request.clicks) and state.seed is None:
            raise PromptError("Place at least one positive point (inside the structure) first.")
        clicks = session_order(request.clicks)
        if box is not None:  # SAM-Med3D: the box is a positive click at its centre, first (it centres the ROI)
            clicks = [(box.centre, True)] + clicks
        return session.set_clicks(clicks)

    def apply(self, request: Request, mask, volume_node, segmentation_node) -> SegmentUpdate:
        """Write the mask into the request's segment (only that one). Main thread (writes MRML)."""
        start = time.perf_counter()
        if mask is None:
            clear_segment(segmentation_node, request.segment_id)
        else:
            write_mask_to_segment(mask, volume_node, segmentation_node, request.segment_id)
        timings = dict(getattr(request.session, "last_timings", None) or {}) if (
            request.clicks or request.box is not None) else {}
        timings["read"] = request.read_seconds
        timings["write"] = time.perf_counter() - start
        return SegmentUpdate(request.segment_id, len(request.clicks), timings)

    def segment(self, volume_node, segmentation_node, segment_id, positive_points_node,
                negative_points_node=None, box_node=None) -> SegmentUpdate:
        """Recompute ``segment_id`` from all control points of the markups nodes (and its box) and write it."""
        start = time.perf_counter()
        request = self.prepare(volume_node, segmentation_node, segment_id, positive_points_node, negative_points_node,
                               box_node)
        computed = time.perf_counter()
        mask = self.compute(request)
        compute_seconds = time.perf_counter() - computed
        update = self.apply(request, mask, volume_node, segmentation_node)
        update.timings["compute"] = compute_seconds
        update.timings["total"] = time.perf_counter() - start
        return update

    # ---- undo / redo / reset --------------------------------------------------------------------------------------
    def remove_last_click(self, volume_node, segmentation_node, segment_id) -> bool:
        """Delete the most recent click's control point (kept for redo); the next computation leaves it out."""
        state = self._state(volume_node, segmentation_node, segment_id, create=False)
        while state is not None and state.clicks:
            click = state.clicks.pop()
            if remove_click(volume_node.GetScene(), click):
                state.redo.append(click)
                return True
        return False

    def restore_click(self, volume_node, segmentation_node, segment_id) -> bool:
        """Re-create the last undone click's control point (same node, same world position)."""
        state = self._state(volume_node, segmentation_node, segment_id, create=False)
        scene = volume_node.GetScene()
        while state is not None and state.redo:
            click = state.redo.pop()
            node = scene.GetNodeByID(click.key[0])
            state.restoring = True
            if node is not None and add_point_world(node, click.world) is not None:
                return True
            state.restoring = False
        return False

    def can_undo(self, volume_node, segmentation_node, segment_id) -> bool:
        state = self._state(volume_node, segmentation_node, segment_id, create=False)
        return bool(state is not None and state.clicks)

    def can_redo(self, volume_node, segmentation_node, segment_id) -> bool:
        state = self._state(volume_node, segmentation_node, segment_id, create=False)
        return bool(state is not None and state.redo)

    def undo(self, volume_node, segmentation_node, segment_id, positive_points_node, negative_points_node=None):
        """Remove the last click and recompute; None when there is nothing to undo."""
        if not self.remove_last_click(volume_node, segmentation_node, segment_id):
            return None
        return self.segment(volume_node, segmentation_node, segment_id, positive_points_node, negative_points_node)

    def redo(self, volume_node, segmentation_node, segment_id, positive_points_node, negative_points_node=None):
        """Re-place the last undone click and recompute; None when there is nothing to redo."""
        if not self.restore_click(volume_node, segmentation_node, segment_id):
            return None
        return self.segment(volume_node, segmentation_node, segment_id, positive_points_node, negative_points_node)

    def reset(self, volume_node, segmentation_node, segment_id, positive_points_node=None,
              negative_points_node=None) -> None:
        """Forget the segment's clicks, delete their control points, and restore the segment's original content."""
        for node in (positive_points_node, negative_points_node):
            if node is not None:
                node.RemoveAllControlPoints()
        key = (volume_node.GetID(), segmentation_node.GetID(), segment_id)
        state = self._states.pop(key, None)
        if state is None:
            return
        if state.seed is None:
            clear_segment(segmentation_node, segment_id)
        else:
            write_mask_to_segment(state.seed, volume_node, segmentation_node, segment_id)
