"""SAM-Med3D interactive segmentation for 3D Slicer: positive / negative points in any view -> a segment.

The widget only forwards Qt signals to :class:`SAMMed3DSlicerLib.controller.InteractiveSegmentationController` and
shows its state; every decision lives in SAMMed3DSlicerLib (MRML only, tested without Slicer).
"""
import logging
import traceback
import unittest

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from SAMMed3DSlicerLib.background import BackgroundJobs
from SAMMed3DSlicerLib.controller import ControllerView, InteractiveSegmentationController
from SAMMed3DSlicerLib.dependencies import InstallCancelled, InstallPlan, ReentryGuard
from SAMMed3DSlicerLib.engine_settings import SERVER, ENGINE_LABELS, EngineChoice, choose_engine, read_engine_choice
from SAMMed3DSlicerLib.interactive_logic import LARGE_OBJECT_MAX_ROIS, InteractiveSegmentationLogic
from SAMMed3DSlicerLib.prompt_nodes import NEGATIVE_COLOR, POSITIVE_COLOR, prompt_nodes

# Keys no Slicer view uses (views: r f b g t v s, arrows, [ ] { }, + -, Home/End/Insert/PageDown, Delete;
# SlicerNNInteractive: e r s Ctrl+Z on the main window). Installed on enter, removed on exit, as the Segment
# Editor does. Reset has no key: it is a button, and undoable.
SHORTCUTS = (
    ("A", "place positive points (inside the structure)", "onPlacePositive"),
    ("D", "place negative points (outside the structure)", "onPlaceNegative"),
    ("Z", "undo the last point (right after a reset: put the reset points back)", "onUndo"),
    ("Shift+Z", "redo", "onRedo"),
    ("N", "next segment (new empty segment, placing positive points)", "onNextSegment"),
)
TURBO = "turbo"
DEMO = "demo"
MEDSAM = "medsam"
MODEL_SOURCES = (
    (TURBO, "SAM-Med3D-turbo (downloaded once)"),
    (DEMO, "Bundled demo model (offline)"),
    (MEDSAM, "MedSAM (box prompts; downloaded once)"),
    ("file", "Local weights file"),
)


def _shortcut_help():
    return "".join("<li><b>%s</b>: %s</li>" % (keys, text) for keys, text, _ in SHORTCUTS)


class SAMMed3DSlicer(ScriptedLoadableModule):
    """Module description shown in Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SAM-Med3D"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Markups", "Segmentations"]
        self.parent.contributors = ["SAMMed3DSlicer developers"]
        self.parent.helpText = (
            "Interactive 3D segmentation with SAM-Med3D (turbo weights): click inside a structure and the segment "
            "appears; add positive (inside) and negative (outside) points in any slice or 3D view to refine it."
            "<ol><li>Select the input volume, the segmentation and the segment (or press <b>Next segment</b>).</li>"
            "<li>Press <b>Positive</b> and click in the structure; the segment updates after every point "
            "(the first point computes the image embedding, later points reuse it).</li>"
            "<li>Add <b>Negative</b> points where the segment leaks; drag points to move them; "
            "<b>Undo</b>/<b>Redo</b>/<b>Reset</b> at will (Undo also takes back a Reset). Each segment keeps its own "
            "points.</li>"
            "<li>A segment that already has content is refined: its content is the starting mask.</li>"
            "<li><b>Box</b>: draw a box around the structure in a slice view (drag its handles to adjust it). "
            "With the MedSAM model the box's slices are segmented slice by slice from the key slice (its centre); "
            "with SAM-Med3D the box is a positive click at its centre.</li></ol>"
            "Keyboard shortcuts (while the module is open; none of them is used by Slicer's views):<ul>"
            + _shortcut_help() + "</ul>"
            "The first use asks to install PyTorch (through the PyTorch extension when installed) and downloads "
            "the SAM-Med3D-turbo weights (about 400 MB) from Hugging Face; the bundled demo model works offline, "
            "and a local weights file can be used. "
            "<b>Engine and model > Engine</b>: <i>This computer</i>, or <i>Server</i> with the URL and token of "
            "your team's <code>sammed3d serve</code> (no PyTorch needed here; the server's model and device are "
            "used). The choice, URL and token are remembered in Slicer's settings for your user, never in the "
            "scene; switching keeps every segment's points and recomputes them on the new engine at the next "
            "point. See <a href='https://github.com/uni-medical/SAM-Med3D'>SAM-Med3D</a>."
        )
        self.parent.acknowledgementText = (
            "SAM-Med3D: Wang H. et al., \"SAM-Med3D: Towards General-purpose Segmentation Models for Volumetric "
            "Medical Images\", arXiv:2310.15161 (2023), and the SAM-Med3D-turbo weights by the uni-medical team "
            "(https://github.com/uni-medical/SAM-Med3D, Apache-2.0). Interaction design inspired by Slicer's Segment "
            "Editor, SlicerNNInteractive and MONAI Label."
        )


class SAMMed3DSlicerLogic(ScriptedLoadableModuleLogic):
    """Slicer-facing logic: the parameter node plus :class:`InteractiveSegmentationLogic` (which does the work)."""

    def __init__(self, checkpoint=TURBO, device="auto"):
        ScriptedLoadableModuleLogic.__init__(self)
        self.interactive = InteractiveSegmentationLogic(checkpoint=checkpoint, device=device)

    def setDefaultParameters(self, parameterNode):
        if not parameterNode.GetParameter("ModelSource"):
            parameterNode.SetParameter("ModelSource", TURBO)
        if not parameterNode.GetParameter("Device"):
            parameterNode.SetParameter("Device", "auto")
        if not parameterNode.GetParameter("FollowLargeObjects"):
            parameterNode.SetParameter("FollowLargeObjects", "true")

    @staticmethod
    def checkpointFromParameters(parameterNode):
        """"turbo", "demo", or the local weights file when that source is chosen (None while no file is chosen)."""
        source = parameterNode.GetParameter("ModelSource")
        if source in (DEMO, MEDSAM):
            return source
        if source != "file":
            return TURBO
        return parameterNode.GetParameter("CheckpointPath") or None

    def setModelOptions(self, checkpoint, device):
        self.interactive.set_model_options(checkpoint or TURBO, device or "auto")

    def setFollowLargeObjects(self, enabled):
        """Follow structures beyond the 192 mm ROI into neighbour ROIs, or keep the official single ROI."""
        self.interactive.set_max_rois(LARGE_OBJECT_MAX_ROIS if enabled else 1)

    def promptNodes(self, segmentationNode, segmentId):
        """(positive, negative) point lists of a segment, created on first use."""
        return prompt_nodes(segmentationNode, segmentId)

    def segment(self, volumeNode, segmentationNode, segmentId, positiveNode=None, negativeNode=None):
        """Recompute a segment from its points (the segment's own point lists unless others are given)."""
        if positiveNode is None:
            positiveNode, negativeNode = self.promptNodes(segmentationNode, segmentId)
        return self.interactive.segment(volumeNode, segmentationNode, segmentId, positiveNode, negativeNode)


class _WidgetView(ControllerView):
    """The controller's view in Slicer: status label, dialogs (never opened inside a VTK callback), progress."""

    def __init__(self, widget):
        self.widget = widget

    def status(self, text):
        self.widget.ui.statusLabel.setText(text)

    def error(self, message):
        qt.QTimer.singleShot(0, lambda: slicer.util.errorDisplay(message, windowTitle="SAM-Med3D"))

    def progress(self, text, fraction=None):
        self.widget.showProgress(text, fraction)

    def changed(self):
        self.widget.updateButtons()

    def start_polling(self):
        self.widget.pollTimer.start()

    def install_dependencies(self, then):
        self.widget.installDependencies(then)


class SAMMed3DSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Qt wiring: selectors, buttons and shortcuts forward to the controller; the GUI shows its state."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.controller = None
        self._parameterNode = None
        self._updatingGUI = False
        self._shortcuts = []
        self._progress = None
        self._installGuard = ReentryGuard()

    # ---- setup --------------------------------------------------------------------------------------------------
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SAMMed3DSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SAMMed3DSlicerLogic()
        self.pollTimer = qt.QTimer(uiWidget)
        self.pollTimer.setInterval(10)  # each poll itself waits up to 30 ms for the worker (GIL released)
        self.pollTimer.connect("timeout()", self._poll)
        self.controller = InteractiveSegmentationController(
            self.logic.interactive, BackgroundJobs(), _WidgetView(self), slicer.mrmlScene)

        # Engine: remembered in the user's application settings (never in the scene: the token stays out of it).
        for kind, label in ENGINE_LABELS:
            self.ui.engineSelector.addItem(label, kind)
        choice = read_engine_choice(qt.QSettings())
        self.ui.engineSelector.setCurrentIndex(max(0, self.ui.engineSelector.findData(choice.kind)))
        self.ui.serverUrlLineEdit.text = choice.url
        self.ui.serverTokenLineEdit.text = choice.token
        self.ui.serverTokenLineEdit.echoMode = qt.QLineEdit.Password
        self.ui.engineSelector.connect("currentIndexChanged(int)", self.onEngineChanged)
        self.ui.serverUrlLineEdit.connect("editingFinished()", self.onEngineChanged)
        self.ui.serverTokenLineEdit.connect("editingFinished()", self.onEngineChanged)
        self.onEngineChanged()

        for button, color, text in ((self.ui.positivePlaceButton, POSITIVE_COLOR, "Positive (inside)"),
                                    (self.ui.negativePlaceButton, NEGATIVE_COLOR, "Negative (outside)")):
            button.setIcon(_dotIcon(color))
            button.setText(text)
        self.ui.modelSelector.clear()
        for source, label in MODEL_SOURCES:
            self.ui.modelSelector.addItem(label, source)
        self.ui.deviceSelector.clear()
        for device in ("auto", "cpu", "cuda", "mps"):
            self.ui.deviceSelector.addItem(device, device)
        self.ui.checkpointPathLineEdit.filters = ctkPathFilters()
        self.ui.checkpointPathLineEdit.nameFilters = ["Weights (*.pth *.pt *.safetensors)"]

        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
        self.ui.segmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.updateParameterNodeFromGUI)
        self.ui.modelSelector.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        self.ui.checkpointPathLineEdit.connect("currentPathChanged(QString)", self.updateParameterNodeFromGUI)
        self.ui.deviceSelector.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        self.ui.followLargeObjectsCheckBox.connect("toggled(bool)", self.updateParameterNodeFromGUI)
        self.ui.positivePlaceButton.connect("clicked(bool)", lambda on: self._togglePlacing(True, on))
        self.ui.boxPlaceButton.connect("clicked(bool)", self._toggleBox)
        self.ui.negativePlaceButton.connect("clicked(bool)", lambda on: self._togglePlacing(False, on))
        self.ui.undoButton.connect("clicked()", self.onUndo)
        self.ui.redoButton.connect("clicked()", self.onRedo)
        self.ui.resetButton.connect("clicked()", self.onReset)
        self.ui.nextSegmentButton.connect("clicked()", self.onNextSegment)
        self.ui.loadModelButton.connect("clicked()", self.onLoadModel)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()
        self._removeShortcuts()
        if self.controller is not None:
            self.pollTimer.stop()
            self.controller.close()
            self.controller.jobs.shutdown()  # its daemon worker never holds up Slicer's exit

    def enter(self):
        self.initializeParameterNode()
        self._installShortcuts()

    def exit(self):
        self._removeShortcuts()
        self.controller.stop_placing()

    def onSceneEndClose(self, caller, event):
        # The controller already dropped its jobs and selection at StartCloseEvent.
        self.setParameterNode(None)
        if self.parent.isEntered:
            self.initializeParameterNode()

    # ---- shortcuts -------------------------------------------------------------------------------------------------
    def _installShortcuts(self):
        self._removeShortcuts()
        for keys, _, method in SHORTCUTS:
            shortcut = qt.QShortcut(qt.QKeySequence(keys), slicer.util.mainWindow())
            shortcut.connect("activated()", getattr(self, method))
            self._shortcuts.append(shortcut)

    def _removeShortcuts(self):
        for shortcut in self._shortcuts:
            shortcut.disconnect("activated()")
            shortcut.setParent(None)
        self._shortcuts = []

    # ---- parameter node <-> GUI -----------------------------------------------------------------------------------
    def initializeParameterNode(self):
        node = self.logic.getParameterNode()
        self.logic.setDefaultParameters(node)
        if not node.GetNodeReference("InputVolume"):
            volume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if volume:
                node.SetNodeReferenceID("InputVolume", volume.GetID())
        self.setParameterNode(node)

    def setParameterNode(self, node):
        if self._parameterNode is not None:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = node
        if node is not None:
            self.addObserver(node, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self, caller=None, event=None):
        if self._parameterNode is None or self._updatingGUI:
            return
        self._updatingGUI = True
        try:
            node = self._parameterNode
            volume, segmentation = node.GetNodeReference("InputVolume"), node.GetNodeReference("Segmentation")
            segmentId = node.GetParameter("SegmentID") or None
            self.ui.inputVolumeSelector.setCurrentNode(volume)
            self.ui.segmentSelector.setCurrentNode(segmentation)
            if segmentId:
                self.ui.segmentSelector.setCurrentSegmentID(segmentId)
            source = node.GetParameter("ModelSource") or TURBO
            self.ui.modelSelector.setCurrentIndex(max(0, self.ui.modelSelector.findData(source)))
            self.ui.checkpointPathLineEdit.setEnabled(source == "file" and not self.controller.engine_is_remote)
            self.ui.checkpointPathLineEdit.currentPath = node.GetParameter("CheckpointPath")
            self.ui.deviceSelector.setCurrentIndex(max(0, self.ui.deviceSelector.findData(node.GetParameter("Device"))))
            followLarge = node.GetParameter("FollowLargeObjects") != "false"
            self.ui.followLargeObjectsCheckBox.checked = followLarge
            checkpoint = SAMMed3DSlicerLogic.checkpointFromParameters(node)
            if checkpoint is not None:
                self.logic.setModelOptions(checkpoint, node.GetParameter("Device"))
            self.logic.setFollowLargeObjects(followLarge)
            self.controller.select(volume, segmentation, segmentId)  # calls updateButtons through the view
        finally:
            self._updatingGUI = False

    def updateParameterNodeFromGUI(self, *args):
        if self._parameterNode is None or self._updatingGUI:
            return
        wasModifying = self._parameterNode.StartModify()
        try:
            self._parameterNode.SetNodeReferenceID("InputVolume", self.ui.inputVolumeSelector.currentNodeID)
            segmentation = self.ui.segmentSelector.currentNode()
            self._parameterNode.SetNodeReferenceID("Segmentation", segmentation.GetID() if segmentation else None)
            self._parameterNode.SetParameter("SegmentID", self.ui.segmentSelector.currentSegmentID() or "")
            self._parameterNode.SetParameter("ModelSource", self.ui.modelSelector.currentData or TURBO)
            self._parameterNode.SetParameter("CheckpointPath", self.ui.checkpointPathLineEdit.currentPath or "")
            self._parameterNode.SetParameter("Device", self.ui.deviceSelector.currentData or "auto")
            self._parameterNode.SetParameter(
                "FollowLargeObjects", "true" if self.ui.followLargeObjectsCheckBox.checked else "false")
        finally:
            self._parameterNode.EndModify(wasModifying)

    def updateButtons(self):
        """Show the controller's state: what can be done, which place mode is on."""
        controller = self.controller
        ready = controller.ready()
        placing = controller.placing
        for button, positive in ((self.ui.positivePlaceButton, True), (self.ui.negativePlaceButton, False)):
            button.setEnabled(ready)
            wasBlocked = button.blockSignals(True)
            button.checked = placing is positive
            button.blockSignals(wasBlocked)
        self.ui.boxPlaceButton.setEnabled(ready)
        wasBlocked = self.ui.boxPlaceButton.blockSignals(True)
        self.ui.boxPlaceButton.checked = controller.placing_box
        self.ui.boxPlaceButton.blockSignals(wasBlocked)
        self.ui.undoButton.setEnabled(controller.can_undo())
        self.ui.redoButton.setEnabled(controller.can_redo())
        self.ui.resetButton.setEnabled(ready)
        self.ui.nextSegmentButton.setEnabled(controller.segmentation_node is not None)

    # ---- placing and buttons ------------------------------------------------------------------------------------------
    def _togglePlacing(self, positive, on):
        if on:
            self.controller.start_placing(positive)
        else:
            self.controller.stop_placing()
        self.updateButtons()

    def _toggleBox(self, on):
        if on:
            self.controller.start_placing_box()
        else:
            self.controller.stop_placing()
        self.updateButtons()

    def onPlacePositive(self):
        self.controller.start_placing(True)

    def onPlaceNegative(self):
        self.controller.start_placing(False)

    def onUndo(self):
        self.controller.undo()

    def onRedo(self):
        self.controller.redo()

    def onReset(self):
        self.controller.reset()

    def onNextSegment(self):
        """Add an empty segment, select it and start placing positive points."""
        if self.controller.segmentation_node is None:
            segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
            segmentation.CreateDefaultDisplayNodes()
            self.ui.segmentSelector.setCurrentNode(segmentation)  # -> parameter node -> controller.select
        segmentId = self.controller.new_segment()
        if segmentId:
            self.ui.segmentSelector.setCurrentSegmentID(segmentId)

    def onLoadModel(self):
        self.controller.load_model()

    def onEngineChanged(self, *args):
        """Engine selector, server URL or token edited: remember and apply (decided in engine_settings)."""
        choice = EngineChoice(self.ui.engineSelector.currentData, self.ui.serverUrlLineEdit.text,
                              self.ui.serverTokenLineEdit.text)
        problem = choose_engine(qt.QSettings(), self.controller, choice)
        if problem:
            self.ui.statusLabel.setText(problem)
        self._showEngine()

    def _showEngine(self):
        """Server fields for a server engine, weights and device for this computer."""
        remote = self.controller.engine_is_remote
        serverChosen = self.ui.engineSelector.currentData == SERVER
        self.ui.serverUrlLineEdit.setEnabled(serverChosen)
        self.ui.serverTokenLineEdit.setEnabled(serverChosen)
        for widget in (self.ui.modelSelector, self.ui.deviceSelector):
            widget.setEnabled(not remote)
        self.ui.checkpointPathLineEdit.setEnabled(not remote and self.ui.modelSelector.currentData == "file")
        self.ui.loadModelButton.setText("Connect" if remote else "Load model")

    # ---- background work, progress ---------------------------------------------------------------------------------
    def _poll(self):
        """Timer: deliver finished background results; the poll waits (GIL released) while the worker runs."""
        if not self.controller.poll():
            self.pollTimer.stop()

    def showProgress(self, text, fraction=None):
        if text is None:
            if self._progress is not None:
                self._progress.close()
                self._progress = None
            return
        if self._progress is None:
            self._progress = slicer.util.createProgressDialog(windowTitle="SAM-Med3D", labelText=text, maximum=0)
            self._progress.setCancelButton(None)
        self._progress.setLabelText(text)
        if fraction is not None:
            self._progress.setMaximum(100)
            self._progress.setValue(int(100 * fraction))

    # ---- dependencies ----------------------------------------------------------------------------------------------
    def installDependencies(self, then):
        """Offer to install missing packages; deferred out of the MRML/VTK callback that needed them, never twice."""
        if self._installGuard.busy:
            return
        qt.QTimer.singleShot(0, lambda: self._installDependenciesNow(then))

    def _installDependenciesNow(self, then):
        if self._installGuard.busy:
            return
        with self._installGuard:
            plan = InstallPlan.current()
            if not plan.needed:
                then()
                return
            if not slicer.util.confirmOkCancelDisplay(plan.question(), windowTitle="SAM-Med3D: install dependencies"):
                self.ui.statusLabel.setText("PyTorch and the other dependencies are needed to run SAM-Med3D.")
                return
            qt.QApplication.setOverrideCursor(qt.Qt.WaitCursor)
            try:
                plan.run(slicer.util.pip_install, _pytorchExtensionInstaller())
            except InstallCancelled as cancelled:
                self.ui.statusLabel.setText(str(cancelled))
                return
            except Exception as error:  # noqa: BLE001 - pip's CalledProcessError and the like: shown, not raised
                logging.error("Installing SAM-Med3D's dependencies failed", exc_info=True)
                slicer.util.errorDisplay("Installing the Python packages failed: %s" % error,
                                         windowTitle="SAM-Med3D", detailedText=traceback.format_exc())
                return
            finally:
                qt.QApplication.restoreOverrideCursor()
            remaining = plan.remaining()
            if plan.restart_required:
                slicer.util.infoDisplay("PyTorch was upgraded; restart Slicer to use it.", windowTitle="SAM-Med3D")
                return
            if remaining.needed:
                slicer.util.errorDisplay("Still missing after installation:\n%s" % remaining.question(),
                                         windowTitle="SAM-Med3D")
                return
        then()


def _pytorchExtensionInstaller():
    """install(requirement) through Slicer's PyTorch extension (it picks the CUDA / CPU build), or None."""
    try:
        import PyTorchUtils
    except ImportError:
        return None

    def install(requirement):
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        return torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=requirement.replace(
            "torch", "", 1)) is not None

    return install


def _dotIcon(color, size=16):
    """A filled circle icon in the colour of the point list (green: positive, red: negative)."""
    pixmap = qt.QPixmap(size, size)
    pixmap.fill(qt.QColor(0, 0, 0, 0))
    painter = qt.QPainter(pixmap)
    painter.setRenderHint(qt.QPainter.Antialiasing)
    painter.setBrush(qt.QColor.fromRgbF(*color))
    painter.setPen(qt.QColor(40, 40, 40))
    painter.drawEllipse(2, 2, size - 4, size - 4)
    painter.end()
    return qt.QIcon(pixmap)


def ctkPathFilters():
    import ctk

    return ctk.ctkPathLineEdit.Files | ctk.ctkPathLineEdit.Readable


class SAMMed3DSlicerTest(ScriptedLoadableModuleTest):
    """In-Slicer self-test: the bundled CT, a click in the liver, the segment compared with the reference chosen
    for the weights it runs with (see SAMMed3DSlicerLib/self_test_case.py). Needs no network: the bundled demo
    model unless SAMMED3D_SELFTEST_CHECKPOINT names other weights. Skipped (not failed) without PyTorch."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        try:
            self.test_click_segments_reference()
        except unittest.SkipTest as skipped:
            self.delayDisplay("Skipped: %s" % skipped)

    def test_click_segments_reference(self):
        from SAMMed3DSlicerLib.dependencies import missing_packages
        from SAMMed3DSlicerLib.self_test_case import SelfTestCase

        if missing_packages()[0]:
            self.skipTest("PyTorch is not installed (the Extensions Index build machines have none)")
        case = SelfTestCase()
        self.delayDisplay("Loading %s" % case.image_path)
        volume = slicer.util.loadVolume(case.image_path)
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        segmentation.CreateDefaultDisplayNodes()
        self.delayDisplay("Segmenting with %s (reference: %s)" % (case.checkpoint, case.reference_kind))
        score, update = case.run(volume, segmentation, SAMMed3DSlicerLogic(checkpoint=case.checkpoint,
                                                                           device="cpu").interactive)
        self.delayDisplay("Segmented: %s" % update.timings)
        self.assertGreaterEqual(score, case.min_dice, "Dice with the %s: %.3f" % (case.reference_kind, score))
        self.delayDisplay("Test passed (Dice %.3f with the %s)" % (score, case.reference_kind))
