"""A thin stand-in for ``SAMMed3DSlicerLib.controller.InteractiveSegmentationController``, used only when that module
is not present (it is being written on another branch). Same constructor and the subset of its API the web app uses,
so the web app runs unchanged on the shared controller once it is there; delete this file then.

Decisions (the shared controller owns the full set): a defined point placed or moved triggers a recomputation of the
selected segment; jobs are newest-wins per segment; place mode follows the selected segment; undo / redo / reset go
through :class:`InteractiveSegmentationLogic`.
"""
from __future__ import annotations

import time
from typing import Optional

from SAMMed3DSlicerLib.prompt_nodes import prompt_nodes, show_only_segment_prompts

_POINT_EVENTS = ("PointPositionDefinedEvent", "PointEndInteractionEvent")


def segment_key(segmentation_node, segment_id):
    return ("segment", segmentation_node.GetID(), segment_id)


class ControllerView(object):
    def status(self, text: str) -> None:
        pass

    def error(self, message: str) -> None:
        pass

    def progress(self, text, fraction=None) -> None:
        pass

    def changed(self) -> None:
        pass

    def start_polling(self) -> None:
        pass


def _format_timings(timings) -> str:
    order = ("total", "encoder", "decoder", "read", "write")
    return ", ".join("%s %.2f s" % (key, timings[key]) for key in order if key in timings)


class InteractiveSegmentationController(object):
    def __init__(self, logic, jobs, view: Optional[ControllerView] = None, scene=None):
        self.logic, self.jobs = logic, jobs
        self.view = view if view is not None else ControllerView()
        self.scene = scene
        self.volume_node = self.segmentation_node = self.segment_id = None
        self._point_tags = []
        self._quiet = 0

    # ---- selection and placing ------------------------------------------------------------------------------------
    def ready(self) -> bool:
        return bool(self.volume_node is not None and self.segmentation_node is not None and self.segment_id)

    def prompt_nodes(self):
        if not self.ready():
            return None, None
        return prompt_nodes(self.segmentation_node, self.segment_id)

    def select(self, volume_node, segmentation_node, segment_id) -> None:
        placing = self.placing
        self.volume_node, self.segmentation_node, self.segment_id = volume_node, segmentation_node, segment_id
        for node, tag in self._point_tags:
            node.RemoveObserver(tag)
        self._point_tags = []
        if segmentation_node is not None:
            show_only_segment_prompts(segmentation_node, segment_id)
        if self.ready():
            for node in self.prompt_nodes():
                for name in _POINT_EVENTS:
                    self._point_tags.append((node, node.AddObserver(getattr(node, name), self._on_points_event)))
            if placing is not None:
                self.start_placing(placing)
        else:
            self.stop_placing()
        self.view.changed()

    def _singletons(self):
        return (self.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton"),
                self.scene.GetNodeByID("vtkMRMLSelectionNodeSingleton"))

    @property
    def placing(self) -> Optional[bool]:
        interaction, selection = self._singletons()
        if interaction is None or interaction.GetCurrentInteractionMode() != interaction.Place or not self.ready():
            return None
        positive, negative = self.prompt_nodes()
        active = selection.GetActivePlaceNodeID()
        return True if active == positive.GetID() else False if active == negative.GetID() else None

    def start_placing(self, positive: bool = True) -> bool:
        if not self.ready():
            return False
        interaction, selection = self._singletons()
        node = self.prompt_nodes()[0 if positive else 1]
        selection.SetReferenceActivePlaceNodeClassName(node.GetClassName())
        selection.SetActivePlaceNodeID(node.GetID())
        interaction.SetPlaceModePersistence(1)
        interaction.SetCurrentInteractionMode(interaction.Place)
        self.view.changed()
        return True

    def stop_placing(self) -> None:
        interaction, _ = self._singletons()
        if interaction is not None and interaction.GetCurrentInteractionMode() == interaction.Place:
            interaction.SetCurrentInteractionMode(interaction.ViewTransform)

    # ---- computation ----------------------------------------------------------------------------------------------
    def _on_points_event(self, caller=None, event=None) -> None:
        if not self._quiet:
            self.request_segmentation()

    def request_segmentation(self) -> bool:
        if not self.ready():
            return False
        volume_node, segmentation_node, segment_id = self.volume_node, self.segmentation_node, self.segment_id
        positive, negative = self.prompt_nodes()
        try:
            request = self.logic.prepare(volume_node, segmentation_node, segment_id, positive, negative)
        except Exception as error:  # noqa: BLE001 - shown to the user
            self._report(error)
            return False
        started = time.perf_counter()
        self.view.status("Segmenting (%d points)..." % len(request.clicks))

        def done(mask):
            if segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
                return
            update = self.logic.apply(request, mask, volume_node, segmentation_node)
            update.timings["total"] = time.perf_counter() - started + request.read_seconds
            self.view.status("%d points; %s" % (update.clicks, _format_timings(update.timings)))
            self.view.changed()

        self.jobs.submit(segment_key(segmentation_node, segment_id), lambda: self.logic.compute(request), done,
                         self._report)
        self.view.start_polling()
        return True

    def poll(self) -> bool:
        return self.jobs.poll()

    def _report(self, error) -> None:
        from sammed3d.errors import PromptError

        message = str(error) if isinstance(error, Exception) else repr(error)
        self.view.status(message)
        if not isinstance(error, PromptError):
            self.view.error(message)

    # ---- undo / redo / reset --------------------------------------------------------------------------------------
    def can_undo(self) -> bool:
        return self.ready() and self.logic.can_undo(self.volume_node, self.segmentation_node, self.segment_id)

    def can_redo(self) -> bool:
        return self.ready() and self.logic.can_redo(self.volume_node, self.segmentation_node, self.segment_id)

    def _edit(self, edit) -> bool:
        if not self.ready():
            return False
        self._quiet += 1
        try:
            done = edit(self.volume_node, self.segmentation_node, self.segment_id)
        finally:
            self._quiet -= 1
        if done:
            self.request_segmentation()
        self.view.changed()
        return done

    def undo(self) -> bool:
        return self._edit(self.logic.remove_last_click)

    def redo(self) -> bool:
        return self._edit(self.logic.restore_click)

    def reset(self) -> bool:
        if not self.ready():
            return False
        self.jobs.invalidate(segment_key(self.segmentation_node, self.segment_id))
        positive, negative = self.prompt_nodes()
        self._quiet += 1
        try:
            self.logic.reset(self.volume_node, self.segmentation_node, self.segment_id, positive, negative)
        finally:
            self._quiet -= 1
        self.view.status("Segment reset.")
        self.view.changed()
        return True

    def close(self) -> None:
        self.select(None, None, None)
