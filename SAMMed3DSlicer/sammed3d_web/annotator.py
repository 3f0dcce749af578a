"""The web app's annotation state on MRML, free of any web framework: one volume, one segmentation, its segments,
the click mode, and SAM-Med3D updates through the Slicer module's own :class:`InteractiveSegmentationLogic`.

A click runs in three steps, as in the Slicer module: ``prepare`` reads MRML on the caller's (event loop) thread,
``compute`` runs on the one worker of :class:`BackgroundJobs`, and :meth:`Annotator.poll` (called from the event
loop) applies the result. Jobs are keyed per segment, so the newest click of a segment wins: an older job that has
not started is skipped and an older result is dropped; other segments are not affected.
"""
from __future__ import annotations

import colorsys
import time
from typing import Callable, Dict, List, Optional

import slicer

from sammed3d.errors import SamMed3DError
from SAMMed3DSlicerLib.background import BackgroundJobs
from SAMMed3DSlicerLib.interactive_logic import InteractiveSegmentationLogic
from SAMMed3DSlicerLib.prompt_nodes import prompt_nodes, show_only_segment_prompts

POSITIVE, NEGATIVE = "positive", "negative"


def segment_color(index: int) -> tuple:
    """A distinct, saturated colour for the index-th segment (golden-angle hues)."""
    return colorsys.hsv_to_rgb((0.08 + 0.618034 * index) % 1.0, 0.75, 0.95)


def hex_color(rgb) -> str:
    return "#%02x%02x%02x" % tuple(int(round(max(0.0, min(1.0, c)) * 255)) for c in rgb[:3])


def rgb_from_hex(text: str) -> tuple:
    text = text.strip().lstrip("#")
    if len(text) < 6:
        raise SamMed3DError("not a colour: %r" % text)
    return tuple(int(text[i:i + 2], 16) / 255.0 for i in (0, 2, 4))


class Annotator(object):
    """Segments, clicks and SAM-Med3D updates for one volume.

    markups_logic: an object with ``place_node(node, persistent)`` and ``disable_place_mode()`` (trame-slicer's
    MarkupsLogic); on_change: called (no arguments) whenever what the page shows may have changed.
    """

    def __init__(self, scene, logic: InteractiveSegmentationLogic, markups_logic, on_change: Callable = None):
        self.scene = scene
        self.logic = logic
        self.markups_logic = markups_logic
        self.on_change = on_change or (lambda: None)
        self.jobs = BackgroundJobs()
        self.volume_node = None
        self.segmentation_node = None
        self.segment_id = None  # type: Optional[str]
        self.mode = None  # type: Optional[str]
        self.status = "Load an image to start."
        self.error = ""
        self.last_timings = {}  # type: Dict[str, float]
        self._observed = {}  # markups node ID -> (node, observer tag)
        self._requested = {}  # segment ID -> perf_counter() of the newest click

    # ---- data ---------------------------------------------------------------------------------------------------
    def set_data(self, volume_node, segmentation_node) -> None:
        """Annotate ``volume_node`` into ``segmentation_node`` (sessions of a previous volume are dropped)."""
        self.set_mode(None)
        for segment_id in list(self._requested):
            self.jobs.invalidate(segment_id)
        self._requested.clear()
        self.logic.forget()
        self._unobserve_all()
        self.volume_node, self.segmentation_node = volume_node, segmentation_node
        self.segment_id = None
        segment_ids = self.segment_ids()
        if not segment_ids:
            self.add_segment()
        else:
            for index, segment_id in enumerate(segment_ids):
                self._observe_prompts(segment_id)
            self.select_segment(segment_ids[0])
        self.status = "Ready: press Positive (p) and click in a view."
        self.on_change()

    def segment_ids(self) -> List[str]:
        if self.segmentation_node is None:
            return []
        return list(self.segmentation_node.GetSegmentation().GetSegmentIDs())

    def segments(self) -> List[dict]:
        """What the segment list shows: id, name, colour, visibility, click count."""
        rows = []
        display = self.segmentation_node.GetDisplayNode() if self.segmentation_node is not None else None
        for segment_id in self.segment_ids():
            segment = self.segmentation_node.GetSegmentation().GetSegment(segment_id)
            rows.append({
                "id": segment_id,
                "name": segment.GetName(),
                "color": hex_color(segment.GetColor()),
                "visible": bool(display.GetSegmentVisibility(segment_id)) if display is not None else True,
                "clicks": len(self.clicks(segment_id)),
            })
        return rows

    # ---- segments -------------------------------------------------------------------------------------------------
    def add_segment(self, name: str = "") -> str:
        segmentation = self.segmentation_node.GetSegmentation()
        index = segmentation.GetNumberOfSegments()
        name = name or "Segment_%d" % (index + 1)
        while segmentation.GetSegmentIdBySegmentName(name):
            index += 1
            name = "Segment_%d" % (index + 1)
        segment_id = segmentation.AddEmptySegment("", name, segment_color(index))
        self._observe_prompts(segment_id)
        self.select_segment(segment_id)
        return segment_id

    def select_segment(self, segment_id: str) -> None:
        if segment_id not in self.segment_ids():
            raise SamMed3DError("no segment %r" % segment_id)
        self.segment_id = segment_id
        show_only_segment_prompts(self.segmentation_node, segment_id)
        if self.mode is not None:
            self.set_mode(self.mode)  # keep placing, into the new segment's point list
        self.on_change()

    def rename_segment(self, segment_id: str, name: str) -> None:
        name = (name or "").strip()
        if not name:
            raise SamMed3DError("a segment needs a name")
        other = self.segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(name)
        if other and other != segment_id:
            raise SamMed3DError("a segment named %r exists already" % name)
        self.segmentation_node.GetSegmentation().GetSegment(segment_id).SetName(name)
        self.on_change()

    def set_segment_color(self, segment_id: str, color: str) -> None:
        self.segmentation_node.GetSegmentation().GetSegment(segment_id).SetColor(*rgb_from_hex(color))
        self.on_change()

    def set_segment_visible(self, segment_id: str, visible: bool) -> None:
        self.segmentation_node.GetDisplayNode().SetSegmentVisibility(segment_id, bool(visible))
        self.on_change()

    def delete_segment(self, segment_id: str) -> None:
        """Remove a segment, its clicks and its session; another segment (a new one if none is left) is selected."""
        self.jobs.invalidate(segment_id)
        self.logic.forget(self.segmentation_node, segment_id)
        for node in prompt_nodes(self.segmentation_node, segment_id, create=False):
            if node is not None:
                self._unobserve(node)
                self.scene.RemoveNode(node)
        self.segmentation_node.GetSegmentation().RemoveSegment(segment_id)
        remaining = self.segment_ids()
        if remaining:
            self.select_segment(remaining[-1])
        else:
            self.add_segment()

    # ---- clicks -------------------------------------------------------------------------------------------------
    def prompts(self, segment_id=None):
        return prompt_nodes(self.segmentation_node, segment_id or self.segment_id)

    def set_mode(self, mode: Optional[str]) -> None:
        """POSITIVE / NEGATIVE: each click in a view places such a point in the current segment; None: navigate."""
        if mode not in (None, POSITIVE, NEGATIVE):
            raise SamMed3DError("unknown mode %r" % mode)
        self.mode = mode
        if mode is None or self.segmentation_node is None:
            self.markups_logic.disable_place_mode()
        else:
            positive, negative = self.prompts()
            self.markups_logic.place_node(positive if mode == POSITIVE else negative, True)
        self.on_change()

    def clicks(self, segment_id=None) -> list:
        """((R, A, S), positive) of a segment's clicks in the order they were placed."""
        segment_id = segment_id or self.segment_id
        if self.volume_node is None or segment_id is None:
            return []
        return [(click.ras, click.positive)
                for click in self.logic.clicks(self.volume_node, self.segmentation_node, segment_id)]

    def can_undo(self) -> bool:
        return self._ready() and self.logic.can_undo(self.volume_node, self.segmentation_node, self.segment_id)

    def can_redo(self) -> bool:
        return self._ready() and self.logic.can_redo(self.volume_node, self.segmentation_node, self.segment_id)

    def undo(self) -> bool:
        if not self._ready() or not self.logic.remove_last_click(self.volume_node, self.segmentation_node,
                                                                 self.segment_id):
            return False
        self.request_update(self.segment_id)
        return True

    def redo(self) -> bool:
        if not self._ready():
            return False
        with self._muted():
            restored = self.logic.restore_click(self.volume_node, self.segmentation_node, self.segment_id)
        if restored:
            self.request_update(self.segment_id)
        return restored

    def reset(self) -> None:
        """Delete the current segment's clicks and give it back the content it had before its first click."""
        if not self._ready():
            return
        self.jobs.invalidate(self.segment_id)
        positive, negative = self.prompts()
        with self._muted():
            self.logic.reset(self.volume_node, self.segmentation_node, self.segment_id, positive, negative)
        self.status = "Reset %s." % self._segment_name(self.segment_id)
        self.on_change()

    # ---- computation ----------------------------------------------------------------------------------------------
    def request_update(self, segment_id: str) -> None:
        """Recompute a segment from its clicks: read MRML now, compute on the worker, apply in :meth:`poll`."""
        try:
            positive, negative = self.prompts(segment_id)
            request = self.logic.prepare(self.volume_node, self.segmentation_node, segment_id, positive, negative)
        except SamMed3DError as error:
            self._fail(error)
            return
        self._requested[segment_id] = time.perf_counter()
        self.status = "Segmenting %s ..." % self._segment_name(segment_id)
        self.error = ""

        def done(mask):
            self._apply(request, mask)

        self.jobs.submit(segment_id, lambda: self._compute(request), done, self._fail)
        self.on_change()

    def _compute(self, request):
        start = time.perf_counter()
        mask = self.logic.compute(request)
        return mask, time.perf_counter() - start

    def _apply(self, request, result) -> None:
        mask, compute_seconds = result
        if request.segment_id not in self.segment_ids():
            return  # deleted meanwhile
        update = self.logic.apply(request, mask, self.volume_node, self.segmentation_node)
        update.timings["compute"] = compute_seconds
        update.timings["total"] = time.perf_counter() - self._requested.get(request.segment_id, time.perf_counter())
        self.last_timings = update.timings
        self.status = "%s: %d click(s). %s" % (self._segment_name(request.segment_id), update.clicks,
                                               format_timings(update.timings))
        self.on_change()

    def _fail(self, error) -> None:
        self.error = str(error) if isinstance(error, SamMed3DError) else "%s: %s" % (type(error).__name__, error)
        self.status = "Error: " + self.error
        self.on_change()

    def poll(self) -> bool:
        """Apply finished computations (event-loop thread); True while some are still running."""
        return self.jobs.poll()

    def busy(self) -> bool:
        return self.jobs.busy()

    # ---- saving ---------------------------------------------------------------------------------------------------
    def clicks_by_segment_name(self) -> Dict[str, list]:
        return {self._segment_name(segment_id): self.clicks(segment_id) for segment_id in self.segment_ids()}

    # ---- internals ------------------------------------------------------------------------------------------------
    def _ready(self) -> bool:
        return self.volume_node is not None and self.segment_id is not None

    def _segment_name(self, segment_id) -> str:
        segment = self.segmentation_node.GetSegmentation().GetSegment(segment_id)
        return segment.GetName() if segment is not None else str(segment_id)

    def _observe_prompts(self, segment_id: str) -> None:
        for node in prompt_nodes(self.segmentation_node, segment_id):
            if node.GetID() in self._observed:
                continue
            tag = node.AddObserver(slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                                   lambda caller, event, segment_id=segment_id: self._on_point(segment_id))
            end_tag = node.AddObserver(slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent,
                                       lambda caller, event, segment_id=segment_id: self._on_point(segment_id))
            self._observed[node.GetID()] = (node, (tag, end_tag))

    def _unobserve(self, node) -> None:
        entry = self._observed.pop(node.GetID(), None)
        if entry is not None:
            for tag in entry[1]:
                entry[0].RemoveObserver(tag)

    def _unobserve_all(self) -> None:
        for node, _ in list(self._observed.values()):
            self._unobserve(node)

    _mute = 0

    def _muted(self):
        annotator = self

        class _Muted(object):
            def __enter__(self):
                annotator._mute += 1

            def __exit__(self, *exc):
                annotator._mute -= 1

        return _Muted()

    def _on_point(self, segment_id: str) -> None:
        if self._mute or self.volume_node is None or segment_id not in self.segment_ids():
            return
        self.request_update(segment_id)


def format_timings(timings: Dict[str, float]) -> str:
    order = ("encoder", "decoder", "compute", "total")
    parts = ["%s %.2f s" % (key, timings[key]) for key in order if key in timings]
    return "Last: " + ", ".join(parts) if parts else ""
