"""The web app's annotation state on MRML, free of any web framework: one volume, one segmentation, its segments
and saving. Every click decision (which events are clicks, newest-wins per segment, place mode following the
segment, undo / redo / reset) belongs to the Slicer module's Qt-free controller, driven here exactly as the Slicer
widget drives it; the model work goes through the module's :class:`InteractiveSegmentationLogic`.

Threading, as in the module: the logic's ``prepare`` reads MRML on the caller's (event-loop) thread, ``compute``
runs on the worker of :class:`BackgroundJobs`, and :meth:`Annotator.poll` (called from the event loop) applies
results.
"""
from __future__ import annotations

import colorsys
from typing import Callable, Dict, List, Optional

from sammed3d.errors import SamMed3DError
from SAMMed3DSlicerLib.background import BackgroundJobs
from SAMMed3DSlicerLib.controller import ControllerView, InteractiveSegmentationController, segment_key
from SAMMed3DSlicerLib.box_prompt import box_node
from SAMMed3DSlicerLib.prompt_nodes import prompt_nodes

POSITIVE, NEGATIVE, BOX = "positive", "negative", "box"


def segment_color(index: int) -> tuple:
    """A distinct, saturated colour for the index-th segment (golden-angle hues)."""
    return colorsys.hsv_to_rgb((0.08 + 0.618034 * index) % 1.0, 0.75, 0.95)


def hex_color(rgb) -> str:
    return "#%02x%02x%02x" % tuple(int(round(max(0.0, min(1.0, c)) * 255)) for c in rgb[:3])


def rgb_from_hex(text: str) -> tuple:
    text = (text or "").strip().lstrip("#")
    try:
        return tuple(int(text[i:i + 2], 16) / 255.0 for i in (0, 2, 4)) if len(text) == 6 else None
    except ValueError:
        return None


def new_jobs() -> BackgroundJobs:
    """The worker; its poll must not wait on the event loop (the page would stall), where that is configurable."""
    try:
        return BackgroundJobs(wait_seconds=0.0)
    except TypeError:
        return BackgroundJobs()


class _View(ControllerView):
    """What the controller tells the user, kept for the page."""

    def __init__(self, annotator):
        self.annotator = annotator

    def status(self, text):
        self.annotator.status = text
        self.annotator.error = ""
        self.annotator.on_change()

    def error(self, message):
        self.annotator.error = message
        self.annotator.status = "Error: " + message
        self.annotator.on_change()

    def progress(self, text, fraction=None):
        if text:
            self.status(text)

    def changed(self):
        self.annotator.on_change()

    def start_polling(self):
        self.annotator.on_change()  # the page starts its poller when busy() turns true


class Annotator(object):
    """Segments, clicks and SAM-Med3D updates for one volume. on_change: called (no arguments) whenever what the
    page shows may have changed."""

    def __init__(self, scene, logic, on_change: Optional[Callable] = None):
        self.scene = scene
        self.logic = logic
        self.on_change = on_change or (lambda: None)
        self.jobs = new_jobs()
        self.status = "Load an image to start."
        self.error = ""
        self.controller = InteractiveSegmentationController(logic, self.jobs, _View(self), scene)

    # ---- data ---------------------------------------------------------------------------------------------------
    @property
    def volume_node(self):
        return self.controller.volume_node

    @property
    def segmentation_node(self):
        return self.controller.segmentation_node

    @property
    def segment_id(self) -> Optional[str]:
        return self.controller.segment_id

    def set_data(self, volume_node, segmentation_node) -> None:
        """Annotate ``volume_node`` into ``segmentation_node``; the first segment (a new one if none) is selected."""
        self.controller.stop_placing()
        self.controller.select(volume_node, segmentation_node, None)
        segment_ids = self.segment_ids()
        if segment_ids:
            self.select_segment(segment_ids[0])
        else:
            self.add_segment()
        self.status = "Ready: press Positive (p) and click in a slice view."
        self.error = ""
        self.on_change()

    def segment_ids(self) -> List[str]:
        if self.segmentation_node is None:
            return []
        return list(self.segmentation_node.GetSegmentation().GetSegmentIDs())

    def segments(self) -> List[dict]:
        """What the segment list shows: id, name, colour, visibility, number of points."""
        rows = []
        display = self.segmentation_node.GetDisplayNode() if self.segmentation_node is not None else None
        for segment_id in self.segment_ids():
            segment = self.segmentation_node.GetSegmentation().GetSegment(segment_id)
            nodes = prompt_nodes(self.segmentation_node, segment_id, create=False)
            rows.append({
                "id": segment_id,
                "name": segment.GetName(),
                "color": hex_color(segment.GetColor()),
                "visible": bool(display.GetSegmentVisibility(segment_id)) if display is not None else True,
                "clicks": sum(node.GetNumberOfDefinedControlPoints() for node in nodes if node is not None),
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
        self.select_segment(segment_id)
        return segment_id

    def select_segment(self, segment_id: str) -> None:
        """Select a segment; place mode (if on) continues in its point list of the same polarity."""
        if segment_id not in self.segment_ids():
            raise SamMed3DError("no segment %r" % segment_id)
        self.controller.select(self.volume_node, self.segmentation_node, segment_id)
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
        rgb = rgb_from_hex(color)
        if rgb is None:
            raise SamMed3DError("not a colour: %r" % color)
        self.segmentation_node.GetSegmentation().GetSegment(segment_id).SetColor(*rgb)
        self.on_change()

    def set_segment_visible(self, segment_id: str, visible: bool) -> None:
        self.segmentation_node.GetDisplayNode().SetSegmentVisibility(segment_id, bool(visible))
        self.on_change()

    def delete_segment(self, segment_id: str) -> None:
        """Remove a segment with its points and session; another segment (a new one if none is left) is selected."""
        remaining = [other for other in self.segment_ids() if other != segment_id]
        segmentation_node = self.segmentation_node
        if remaining:
            self.select_segment(remaining[-1])
        else:
            self.controller.select(self.volume_node, segmentation_node, None)
        self.jobs.invalidate(segment_key(segmentation_node, segment_id))
        self.logic.forget(segmentation_node, segment_id)
        for node in prompt_nodes(segmentation_node, segment_id, create=False) + (
                box_node(segmentation_node, segment_id, create=False),):
            if node is not None:
                self.scene.RemoveNode(node)
        segmentation_node.GetSegmentation().RemoveSegment(segment_id)
        if not remaining:
            self.add_segment()
        self.on_change()

    # ---- clicks -------------------------------------------------------------------------------------------------
    def prompts(self, segment_id=None):
        return prompt_nodes(self.segmentation_node, segment_id or self.segment_id)

    @property
    def mode(self) -> Optional[str]:
        if self.controller.placing_box:
            return BOX
        placing = self.controller.placing
        return None if placing is None else POSITIVE if placing else NEGATIVE

    def set_mode(self, mode: Optional[str]) -> None:
        """POSITIVE / NEGATIVE: each click in a slice view places such a point in the current segment; BOX: draw the
        segment's box in a slice view (MedSAM segments its slices, SAM-Med3D clicks its centre); None: navigate."""
        if mode not in (None, POSITIVE, NEGATIVE, BOX):
            raise SamMed3DError("unknown mode %r" % mode)
        if mode is None:
            self.controller.stop_placing()
        elif not (self.controller.start_placing_box() if mode == BOX else self.controller.start_placing(
                mode == POSITIVE)):
            raise SamMed3DError("load an image first")
        self.on_change()

    def clicks(self, segment_id=None) -> list:
        """((R, A, S), positive) of a segment's clicks in the order they were placed."""
        segment_id = segment_id or self.segment_id
        if self.volume_node is None or segment_id is None:
            return []
        return [(click.ras, click.positive)
                for click in self.logic.clicks(self.volume_node, self.segmentation_node, segment_id)]

    def can_undo(self) -> bool:
        return self.controller.can_undo()

    def can_redo(self) -> bool:
        return self.controller.can_redo()

    def undo(self) -> bool:
        return self.controller.undo()

    def redo(self) -> bool:
        return self.controller.redo()

    def reset(self) -> bool:
        """Delete the current segment's points and give it back its content from before its first point."""
        return self.controller.reset()

    def poll(self) -> bool:
        """Apply finished computations (event-loop thread); True while some are still running."""
        return self.controller.poll()

    def busy(self) -> bool:
        return self.jobs.busy()

    # ---- saving ---------------------------------------------------------------------------------------------------
    def boxes_by_segment_name(self) -> Dict[str, object]:
        """Segment name -> its box (:class:`sammed3d.prompts.Box` in the volume's RAS) or None."""
        from SAMMed3DSlicerLib.box_prompt import current_box

        boxes = {}
        for segment_id in self.segment_ids():
            node = box_node(self.segmentation_node, segment_id, create=False)
            name = self.segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
            boxes[name] = current_box(self.volume_node, node) if node is not None else None
        return boxes

    def clicks_by_segment_name(self) -> Dict[str, list]:
        names = {}
        for segment_id in self.segment_ids():
            names[self.segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()] = self.clicks(segment_id)
        return names
