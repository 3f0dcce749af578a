"""The trame page: Slicer's views (trame-slicer), the segment list, the click tools and saving.

One server process holds one MRML scene, and trame shares one state among the browser tabs connected to it; so
``sammed3d web`` runs one such process per tab behind a front process (``front.py``, ``scenes.py``), unless
``--single-scene``.
"""
from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Optional

if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    # No X server (a GPU box, a container): render offscreen with EGL (Mesa or the GPU driver).
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

from trame.app import get_server
from trame.ui.vuetify3 import VAppLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v3
from trame_server.utils.asynchronous import create_task
from trame_slicer import module as trame_slicer_module
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

from sammed3d.errors import SamMed3DError
from SAMMed3DSlicerLib.prompt_nodes import prompt_nodes

from . import scene_io
from .annotator import BOX, NEGATIVE, POSITIVE, Annotator
from .auth import add_token_check
from .saving import annotation_fingerprint, recovery_output, save_annotations

#: Window / level presets (HU) as in Slicer's Volumes module; "Auto" lets Slicer choose from the histogram.
WINDOW_LEVEL_PRESETS = {
    "Auto": None,
    "Abdomen": (350.0, 40.0),
    "Lung": (1400.0, -500.0),
    "Bone": (1000.0, 400.0),
    "Brain": (100.0, 50.0),
}

#: Keyboard shortcuts (shown in the buttons' tooltips); keys Slicer's views use themselves are avoided.
SHORTCUTS = {
    "positive": "p", "negative": "n", "box": "x", "navigate": "Escape", "undo": "Ctrl+Z", "redo": "Ctrl+Y",
    "reset": "Shift+R", "save": "Ctrl+S",
}

KEYBOARD_SCRIPT = """
document.addEventListener('keydown', function (event) {
  var tag = (event.target && event.target.tagName || '').toLowerCase();
  if (tag === 'input' || tag === 'textarea') { return; }
  var key = event.key, ctrl = event.ctrlKey || event.metaKey, id = null;
  if (ctrl && (key === 'z' || key === 'Z') && !event.shiftKey) { id = 'sam-undo'; }
  else if (ctrl && (key === 'y' || ((key === 'z' || key === 'Z') && event.shiftKey))) { id = 'sam-redo'; }
  else if (ctrl && (key === 's' || key === 'S')) { id = 'sam-save'; }
  else if (!ctrl && key === 'p') { id = 'sam-positive'; }
  else if (!ctrl && key === 'n') { id = 'sam-negative'; }
  else if (!ctrl && key === 'x') { id = 'sam-box'; }
  else if (!ctrl && key === 'R' && event.shiftKey) { id = 'sam-reset'; }
  else if (key === 'Escape') { id = 'sam-navigate'; }
  if (id) { var button = document.getElementById(id); if (button) { event.preventDefault(); button.click(); } }
});
"""


def four_up_layout() -> Layout:
    """Slicer's Four-Up: axial | 3D above sagittal | coronal."""
    return Layout(LayoutDirection.Vertical, [
        Layout(LayoutDirection.Horizontal, [ViewLayoutDefinition.axial_view(), ViewLayoutDefinition.threed_view()]),
        Layout(LayoutDirection.Horizontal, [ViewLayoutDefinition.sagittal_view(),
                                            ViewLayoutDefinition.coronal_view()]),
    ])


def layouts() -> dict:
    grid = {"Four-Up": four_up_layout()}
    grid.update(LayoutManager.default_grid_configuration())
    return grid


class WebApp(object):
    """One annotation page: a trame server, a Slicer scene, the annotator and the UI."""

    def __init__(self, logic, output: Path, token: Optional[str] = None, server=None):
        self.server = server or get_server(client_type="vue3")
        self.server.enable_module(trame_slicer_module)
        self.output = Path(output)
        self.token = token
        self.slicer_app = SlicerApp()
        self.scene = self.slicer_app.scene
        register_rca_factories(self.slicer_app.view_manager, self.server)
        self.layout_manager = LayoutManager(self.scene, self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout_dict(layouts())
        self.layout_manager.set_layout("Four-Up")
        self.annotator = Annotator(self.scene, logic, on_change=self.refresh)
        self._poller = None
        self._loop = None  # the server's event loop, once it runs (unsaved work is saved on it at shutdown)
        self.saved = []
        self._saved_fingerprint = self._fingerprint()  # what the files (or the loaded data) hold
        self._init_state()
        self._build_ui()
        self.server.controller.on_server_bind.add(self._bind)
        self.server.controller.on_client_connected.add(self._on_client_connected)

    # ---- state ----------------------------------------------------------------------------------------------------
    @property
    def state(self):
        return self.server.state

    def _init_state(self):
        state = self.state
        state.trame__title = "SAM-Med3D"
        state.segments = []
        state.segment_id = None
        state.segment_name = ""
        state.segment_color = "#ffffff"
        state.mode = None
        state.status = "Load an image to start."
        state.error = ""
        state.can_undo = False
        state.can_redo = False
        state.busy = False
        state.has_volume = False
        state.saved = False
        state.output_name = "%s/%s" % (self.output.absolute().parent.name, self.output.name)
        state.layout_id = "Four-Up"
        state.layout_ids = list(layouts())
        state.wl_preset = "Auto"
        state.change("layout_id")(lambda layout_id, **_: self.layout_manager.set_layout(layout_id))
        state.change("wl_preset")(lambda wl_preset, **_: self.set_window_level(wl_preset))

    def refresh(self):
        """Push the annotator's state to the page (event-loop thread)."""
        annotator = self.annotator
        with self.state:
            segments = annotator.segments() if annotator.segmentation_node is not None else []
            self.state.segments = segments
            self.state.segment_id = annotator.segment_id
            current = next((row for row in segments if row["id"] == annotator.segment_id), None)
            self.state.segment_name = current["name"] if current else ""
            self.state.segment_color = current["color"] if current else "#ffffff"
            self.state.mode = annotator.mode
            self.state.status = annotator.status
            self.state.error = annotator.error
            self.state.can_undo = annotator.can_undo()
            self.state.can_redo = annotator.can_redo()
            self.state.busy = annotator.busy()
            self.state.has_volume = annotator.volume_node is not None
        if annotator.busy():
            self._ensure_poller()

    # ---- data ---------------------------------------------------------------------------------------------------
    def load(self, image, segmentation_path=None, name="Image") -> None:
        """Show ``image`` (SimpleITK) and annotate it; ``segmentation_path``: an existing segmentation to refine."""
        self.annotator.controller.stop_placing()
        old_nodes = [self.annotator.segmentation_node, self.annotator.volume_node]
        self.annotator.controller.select(None, None, None)
        for node in old_nodes + list(self.scene.GetNodesByClass("vtkMRMLMarkupsFiducialNode")):
            if node is not None:
                self.scene.RemoveNode(node)
        self.annotator.logic.forget()
        volume = scene_io.add_volume_node(self.scene, image, name)
        if segmentation_path is not None:
            segmentation = scene_io.load_segmentation_file(self.scene, segmentation_path, volume)
        else:
            segmentation = scene_io.add_segmentation_node(self.scene, volume)
        for view in self.slicer_app.view_manager.get_slice_views():
            view.set_background_volume_id(volume.GetID())
            view.set_foreground_volume_id(None)
            view.set_visible_in_3d(True)
        self.annotator.set_data(volume, segmentation)
        self.set_window_level(self.state.wl_preset or "Auto")
        self.slicer_app.display_manager.reset_views()
        self._saved_fingerprint = self._fingerprint()  # freshly loaded: nothing unsaved yet

    def load_segmentation(self, path) -> None:
        annotator = self.annotator
        if annotator.volume_node is None:
            raise SamMed3DError("load an image first")
        segmentation = scene_io.load_segmentation_file(self.scene, path, annotator.volume_node)
        old = annotator.segmentation_node
        annotator.set_data(annotator.volume_node, segmentation)
        if old is not None:
            for segment_id in old.GetSegmentation().GetSegmentIDs():
                for node in prompt_nodes(old, segment_id, create=False):
                    if node is not None:
                        self.scene.RemoveNode(node)
            annotator.logic.forget(old)
            self.scene.RemoveNode(old)
        self._saved_fingerprint = self._fingerprint()

    def set_window_level(self, preset) -> None:
        volume = self.annotator.volume_node
        display = volume.GetDisplayNode() if volume is not None else None
        if display is None or preset not in WINDOW_LEVEL_PRESETS:
            return
        values = WINDOW_LEVEL_PRESETS[preset]
        if values is None:
            display.AutoWindowLevelOn()
        else:
            display.AutoWindowLevelOff()
            display.SetWindowLevel(*values)

    # ---- actions (page) -------------------------------------------------------------------------------------------
    def _guarded(self, action, *args):
        try:
            action(*args)
        except SamMed3DError as error:
            self.annotator.error = str(error)
            self.annotator.status = "Error: %s" % error
        self._after_action()

    def _after_action(self):
        self.refresh()

    def on_positive(self):
        self._guarded(self.annotator.set_mode, None if self.annotator.mode == POSITIVE else POSITIVE)

    def on_negative(self):
        self._guarded(self.annotator.set_mode, None if self.annotator.mode == NEGATIVE else NEGATIVE)

    def on_box(self):
        self._guarded(self.annotator.set_mode, None if self.annotator.mode == BOX else BOX)

    def on_navigate(self):
        self._guarded(self.annotator.set_mode, None)

    def on_undo(self):
        self._guarded(self.annotator.undo)

    def on_redo(self):
        self._guarded(self.annotator.redo)

    def on_reset(self):
        self._guarded(self.annotator.reset)

    def on_add_segment(self):
        self._guarded(self.annotator.add_segment)

    def on_select_segment(self, segment_id):
        self._guarded(self.annotator.select_segment, segment_id)

    def on_delete_segment(self):
        self._guarded(self.annotator.delete_segment, self.annotator.segment_id)

    def on_rename_segment(self, name):
        self._guarded(self.annotator.rename_segment, self.annotator.segment_id, name)

    def on_color_segment(self, color):
        self._guarded(self.annotator.set_segment_color, self.annotator.segment_id, color)

    def on_toggle_visible(self, segment_id):
        row = next((r for r in self.annotator.segments() if r["id"] == segment_id), None)
        if row is not None:
            self._guarded(self.annotator.set_segment_visible, segment_id, not row["visible"])

    def on_save(self):
        annotator = self.annotator
        if annotator.segmentation_node is None:
            return
        try:
            self.saved = save_annotations(annotator.segmentation_node, annotator.clicks_by_segment_name(), self.output,
                                          annotator.boxes_by_segment_name())
            self._saved_fingerprint = self._fingerprint()
            annotator.status = "Saved %s" % ", ".join(path.name for path in self.saved)
            annotator.error = ""
            self.state.saved = True
        except SamMed3DError as error:
            annotator.error = str(error)
            annotator.status = "Save failed: %s (the previous file is untouched)" % error
        self.refresh()

    def on_upload_image(self, files):
        def load():
            with tempfile.TemporaryDirectory() as folder:
                path = scene_io.extract_upload(files or [], Path(folder))
                self.load(scene_io.read_image_path(path), name=Path(path).name.split(".")[0] or "Image")
        self._guarded(load)

    def on_upload_segmentation(self, files):
        def load():
            with tempfile.TemporaryDirectory() as folder:
                self.load_segmentation(scene_io.extract_upload(files or [], Path(folder)))
        self._guarded(load)

    # ---- unsaved work ---------------------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        annotator = self.annotator
        return annotation_fingerprint(annotator.segmentation_node, annotator.clicks_by_segment_name(),
                                      annotator.boxes_by_segment_name())

    def has_unsaved_work(self) -> bool:
        return self.annotator.segmentation_node is not None and self._fingerprint() != self._saved_fingerprint

    def save_unsaved(self) -> Optional[Path]:
        """Save work done since the last Save (or load) into a new folder beside the output (see `saving`); returns
        the segmentation written there, or None when nothing was unsaved. Never touches the output itself."""
        annotator = self.annotator
        if annotator.segmentation_node is None:
            return None
        fingerprint = self._fingerprint()  # hashes every labelmap: once per call
        if fingerprint == self._saved_fingerprint:
            return None
        output = recovery_output(self.output)
        save_annotations(annotator.segmentation_node, annotator.clicks_by_segment_name(), output,
                         annotator.boxes_by_segment_name())
        self._saved_fingerprint = fingerprint
        return output

    def save_unsaved_from_thread(self, timeout: float = 8.0) -> None:
        """From any thread (the scene's shutdown): run :meth:`save_unsaved` on the server's event loop, which owns
        the scene, waiting up to ``timeout`` seconds; reports on stdout (the `sammed3d web` log)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        done = threading.Event()
        outcome = []

        def save():
            try:
                outcome.append(self.save_unsaved())
            except Exception as error:  # noqa: BLE001 - reported below, the scene is stopping anyway
                outcome.append(error)
            finally:
                done.set()

        try:
            loop.call_soon_threadsafe(save)
        except RuntimeError:  # the loop has stopped
            return
        if not done.wait(timeout):
            print("sammed3d web: the scene was busy; its unsaved work could not be saved", flush=True)
        elif isinstance(outcome[0], Exception):
            print("sammed3d web: saving the unsaved work failed: %s" % outcome[0], flush=True)
        elif outcome[0] is not None:
            print("sammed3d web: unsaved work saved to %s" % outcome[0].parent, flush=True)

    # ---- background results ---------------------------------------------------------------------------------------
    def _ensure_poller(self):
        if self._poller is None or self._poller.done():
            self._poller = create_task(self._poll())

    async def _poll(self):
        while True:
            await asyncio.sleep(0.03)
            if not self.annotator.poll():
                self.refresh()
                return

    def _on_client_connected(self, *args, **kwargs):
        # The views get their real size from the page: frame the 3D view again once they have it.
        asyncio.get_event_loop().call_later(1.0, self._reset_3d_views)

    def _reset_3d_views(self):
        for view in self.slicer_app.view_manager.get_threed_views():
            view.reset_view()

    # ---- HTTP -----------------------------------------------------------------------------------------------------
    def _bind(self, wslink_server):
        from aiohttp import web

        self._loop = asyncio.get_event_loop()
        app = wslink_server.app
        if self.token:
            add_token_check(app, self.token)

        async def download(request):
            what = request.match_info["what"]
            saved = [path for path in self.saved if path.exists()]
            if what == "segmentation" and saved:
                return web.FileResponse(saved[0], headers={
                    "Content-Disposition": 'attachment; filename="%s"' % saved[0].name})
            if what == "points" and saved:
                import io
                import zipfile

                buffer = io.BytesIO()
                with zipfile.ZipFile(buffer, "w") as archive:
                    for path in saved[1:]:
                        archive.write(str(path), path.name)
                return web.Response(body=buffer.getvalue(), content_type="application/zip", headers={
                    "Content-Disposition": 'attachment; filename="%s.points.zip"'
                                           % self.output.name[:-len(".seg.nrrd")]})
            raise web.HTTPNotFound(text="nothing saved yet")

        app.router.add_get("/download/{what}", download)

    # ---- UI -------------------------------------------------------------------------------------------------------
    def _tool_button(self, label, element_id, shortcut, click, **kwargs):
        with v3.VBtn(label, id=element_id, click=click, size="small", classes="ma-1", **kwargs):
            v3.VTooltip(activator="parent", location="bottom", text="%s (%s)" % (label, shortcut))

    def _build_ui(self):
        ctrl = self.server.controller
        with VAppLayout(self.server, theme="dark") as self.ui:
            client.Script(KEYBOARD_SCRIPT)
            client.Style("html { overflow-y: hidden; } .sam-side { width: 340px; }")
            with v3.VAppBar(density="compact"):
                v3.VToolbarTitle("SAM-Med3D", style="max-width: 160px;")
                self._tool_button("Positive", "sam-positive", SHORTCUTS["positive"], self.on_positive,
                                  color=("mode === 'positive' ? 'green' : undefined",),
                                  variant=("mode === 'positive' ? 'flat' : 'tonal'",),
                                  disabled=("!has_volume",))
                self._tool_button("Negative", "sam-negative", SHORTCUTS["negative"], self.on_negative,
                                  color=("mode === 'negative' ? 'red' : undefined",),
                                  variant=("mode === 'negative' ? 'flat' : 'tonal'",),
                                  disabled=("!has_volume",))
                self._tool_button("Box", "sam-box", SHORTCUTS["box"], self.on_box,
                                  color=("mode === 'box' ? 'amber' : undefined",),
                                  variant=("mode === 'box' ? 'flat' : 'tonal'",),
                                  disabled=("!has_volume",))
                self._tool_button("Navigate", "sam-navigate", SHORTCUTS["navigate"], self.on_navigate,
                                  variant="tonal", disabled=("!has_volume",))
                self._tool_button("Undo", "sam-undo", SHORTCUTS["undo"], self.on_undo, variant="tonal",
                                  disabled=("!can_undo",))
                self._tool_button("Redo", "sam-redo", SHORTCUTS["redo"], self.on_redo, variant="tonal",
                                  disabled=("!can_redo",))
                self._tool_button("Reset", "sam-reset", SHORTCUTS["reset"], self.on_reset, variant="tonal",
                                  disabled=("!has_volume",))
                self._tool_button("Save", "sam-save", SHORTCUTS["save"], self.on_save, variant="tonal",
                                  color="primary", disabled=("!has_volume",))
                v3.VSpacer()
                html.A("Download segmentation", href="download/segmentation", download=True, v_if=("saved",),
                       classes="text-caption mx-2", style="color: #8ecbff;")
                html.A("Download points", href="download/points", download=True, v_if=("saved",),
                       classes="text-caption mx-2", style="color: #8ecbff;")
                v3.VSelect(v_model=("layout_id",), items=("layout_ids",), density="compact", hide_details=True,
                           label="Layout", style="max-width: 170px;", classes="mx-2")
            with v3.VNavigationDrawer(permanent=True, width=340, location="left"):
                with v3.VContainer(classes="pa-2"):
                    v3.VFileInput(label="Open image (NIfTI, NRRD, MHA, zipped DICOM)", density="compact",
                                  multiple=True, hide_details=True, prepend_icon="mdi-file-upload",
                                  accept=".nii,.gz,.nrrd,.mha,.mhd,.zip,.dcm",
                                  change="trigger('%s', [$event.target.files])" % ctrl.trigger_name(
                                      self.on_upload_image))
                    v3.VFileInput(label="Open segmentation to refine (.seg.nrrd, labels)", density="compact",
                                  hide_details=True, prepend_icon="mdi-layers-outline", classes="mt-2",
                                  accept=".nrrd,.nii,.gz,.mha,.zip", disabled=("!has_volume",),
                                  change="trigger('%s', [$event.target.files])" % ctrl.trigger_name(
                                      self.on_upload_segmentation))
                    html.Div("Window / level", classes="text-caption mt-3")
                    with v3.VBtnToggle(v_model=("wl_preset",), density="compact", mandatory=True,
                                       divided=True, variant="outlined"):
                        for preset in WINDOW_LEVEL_PRESETS:
                            v3.VBtn(preset, value=preset, size="x-small")
                    with html.Div(classes="d-flex align-center mt-3"):
                        html.Div("Segments", classes="text-subtitle-2 flex-grow-1")
                        with v3.VBtn("Add", id="sam-add-segment", size="small", variant="tonal",
                                     click=self.on_add_segment, disabled=("!has_volume",),
                                     prepend_icon="mdi-plus"):
                            v3.VTooltip(activator="parent", text="Add a segment")
                        with v3.VBtn("Delete", id="sam-delete-segment", size="small", variant="tonal",
                                     classes="ml-1", click=self.on_delete_segment, disabled=("!segment_id",),
                                     prepend_icon="mdi-delete"):
                            v3.VTooltip(activator="parent", text="Delete the selected segment")
                    with v3.VList(density="compact", classes="mt-1", aria_label="Segments"):
                        with v3.VListItem(v_for="seg in segments", key="seg.id",
                                          active=("seg.id === segment_id",),
                                          click=(self.on_select_segment, "[seg.id]")):
                            with html.Div(classes="d-flex align-center"):
                                html.Span(style=("{display: 'inline-block', width: '14px', height: '14px', "
                                                 "borderRadius: '3px', marginRight: '8px', background: seg.color}",))
                                html.Span("{{ seg.name }}", classes="flex-grow-1")
                                html.Span("{{ seg.clicks }} pt", classes="text-caption mx-2")
                                v3.VBtn(icon=("seg.visible ? 'mdi-eye' : 'mdi-eye-off'",), size="x-small",
                                        variant="text", aria_label=("'Show/hide ' + seg.name",),
                                        click=(self.on_toggle_visible, "[seg.id]"))
                    with html.Div(classes="d-flex align-center mt-2", v_if=("segment_id",)):
                        v3.VTextField(label="Name", model_value=("segment_name",), density="compact",
                                      hide_details=True,
                                      change="trigger('%s', [$event.target.value])" % ctrl.trigger_name(
                                          self.on_rename_segment))
                        html.Input(type="color", value=("segment_color",), title="Segment colour",
                                   aria_label="Segment colour", style="width: 40px; height: 32px; margin-left: 8px;",
                                   change="trigger('%s', [$event.target.value])" % ctrl.trigger_name(
                                       self.on_color_segment))
                    html.Div("Output: {{ output_name }}", classes="text-caption mt-3")
                    html.Div("{{ status }}", id="sam-status", role="status", classes="text-body-2 mt-2",
                             style=("{color: error ? '#ff8a80' : undefined}",))
                    html.Div("Shortcuts: p positive, n negative, x box, Esc navigate, Ctrl+Z undo, Ctrl+Y redo, "
                             "Shift+R reset, Ctrl+S save. Scroll slices with the sliders or the mouse wheel.",
                             classes="text-caption mt-3", style="opacity: 0.7;")
            with v3.VMain(style="height: 100vh;"):
                with html.Div(style="position: relative; width: 100%; height: 100%;"):
                    self.layout_manager.initialize_layout_grid(self.ui)

    # ---- run ------------------------------------------------------------------------------------------------------
    def start(self, host: str, port: int, **kwargs):
        """Serve the page (blocking by default; ``exec_mode="task"`` inside a running event loop)."""
        argv, sys.argv = sys.argv, sys.argv[:1]  # trame parses sys.argv itself; our options are not its options
        try:
            return self.server.start(host=host, port=port, open_browser=False, show_connection_info=False,
                                     timeout=0, **kwargs)
        finally:
            sys.argv = argv
