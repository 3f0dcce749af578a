"""SAM-Med3D interactive segmentation for 3D Slicer: positive / negative points in any view -> a segment.

The widget is thin Qt wiring; every decision lives in SAMMed3DSlicerLib (MRML only, tested without Slicer).
"""
import logging
import time

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
from SAMMed3DSlicerLib.dependencies import missing_packages
from SAMMed3DSlicerLib.interactive_logic import LARGE_OBJECT_MAX_ROIS, InteractiveSegmentationLogic
from SAMMed3DSlicerLib.prompt_nodes import prompt_nodes, show_only_segment_prompts

SHORTCUTS = (
    ("A", "place positive points", "onPlacePositive"),
    ("S", "place negative points", "onPlaceNegative"),
    ("Ctrl+Z", "undo the last point", "onUndo"),
    ("Ctrl+Y", "redo", "onRedo"),
    ("R", "reset the segment (remove its points, restore its original content)", "onReset"),
    ("E", "next segment (new empty segment)", "onNextSegment"),
)
TURBO = "turbo"


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
            "<b>Undo</b>/<b>Redo</b>/<b>Reset</b> at will. Each segment keeps its own points.</li>"
            "<li>A segment that already has content is refined: its content is the starting mask.</li></ol>"
            "Keyboard shortcuts (while the module is open):<ul>" + _shortcut_help() + "</ul>"
            "The first use asks to install PyTorch (through the PyTorch extension when installed) and downloads "
            "the SAM-Med3D-turbo weights (about 400 MB) from Hugging Face, or use a local weights file. "
            "See <a href='https://github.com/uni-medical/SAM-Med3D'>SAM-Med3D</a>."
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
        """"turbo", or the local weights file when that source is chosen (None while no file is chosen)."""
        if parameterNode.GetParameter("ModelSource") != "file":
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

    def reset(self, volumeNode, segmentationNode, segmentId):
        positiveNode, negativeNode = self.promptNodes(segmentationNode, segmentId)
        self.interactive.reset(volumeNode, segmentationNode, segmentId, positiveNode, negativeNode)

    @staticmethod
    def ensureDependencies(askConfirmation=True):
        """Install missing Python packages after the user agrees; True when everything is importable."""
        torchMissing, pipRequirements = missing_packages()
        if not torchMissing and not pipRequirements:
            return True
        names = (["PyTorch"] if torchMissing else []) + pipRequirements
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                "SAM-Med3D needs these Python packages, not installed yet:\n  %s\n\nInstall them now? This downloads "
                "them (PyTorch is large) and may take several minutes." % "\n  ".join(names),
                windowTitle="SAM-Med3D: install dependencies"):
            return False
        if torchMissing:
            try:
                import PyTorchUtils  # the PyTorch extension: picks the right CUDA / CPU wheel
            except ImportError:
                PyTorchUtils = None
            if PyTorchUtils is not None:
                torchLogic = PyTorchUtils.PyTorchUtilsLogic()
                if not torchLogic.torchInstalled():
                    if torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=">=2.1") is None:
                        return False
            else:
                slicer.util.pip_install("torch>=2.1")
        if pipRequirements:
            slicer.util.pip_install(pipRequirements)
        torchMissing, pipRequirements = missing_packages()
        return not torchMissing and not pipRequirements


class SAMMed3DSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Qt wiring: selectors, point placement, buttons, shortcuts; inference off the GUI thread."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._updatingGUI = False
        self._shortcuts = []
        self._observedPointNodes = []
        self._jobs = None
        self._progress = None
        self._download = None

    # ---- setup --------------------------------------------------------------------------------------------------
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SAMMed3DSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SAMMed3DSlicerLogic()
        self._jobs = BackgroundJobs()
        self._pollTimer = qt.QTimer(uiWidget)
        self._pollTimer.setInterval(30)
        self._pollTimer.connect("timeout()", self._pollJobs)

        for placeWidget in (self.ui.positivePlaceWidget, self.ui.negativePlaceWidget):
            placeWidget.setMRMLScene(slicer.mrmlScene)
            placeWidget.placeMultipleMarkups = placeWidget.ForcePlaceMultipleMarkups  # persistent place mode
            placeWidget.buttonsVisible = False
            placeWidget.placeButton().show()
            placeWidget.deleteAllControlPointsOptionVisible = False
        self.ui.positivePlaceWidget.placeButton().setText("Positive")
        self.ui.negativePlaceWidget.placeButton().setText("Negative")
        self.ui.positivePlaceWidget.placeButton().setToolTip("Place points inside the structure (A)")
        self.ui.negativePlaceWidget.placeButton().setToolTip("Place points outside the structure (S)")

        self.ui.modelSelector.clear()
        self.ui.modelSelector.addItem("SAM-Med3D-turbo (downloaded once)", TURBO)
        self.ui.modelSelector.addItem("Local weights file", "file")
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
        self.ui.undoButton.connect("clicked()", self.onUndo)
        self.ui.redoButton.connect("clicked()", self.onRedo)
        self.ui.resetButton.connect("clicked()", self.onReset)
        self.ui.nextSegmentButton.connect("clicked()", self.onNextSegment)
        self.ui.loadModelButton.connect("clicked()", self.onLoadModel)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()
        self._removeShortcuts()
        if self._jobs is not None:
            self._pollTimer.stop()
            self._jobs.shutdown()

    def enter(self):
        self.initializeParameterNode()
        self._installShortcuts()

    def exit(self):
        self._removeShortcuts()
        self.onStopPlacing()

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)
        self.logic.interactive.forget()

    def onSceneEndClose(self, caller, event):
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

    def _selection(self):
        """(volume, segmentation, segment ID) currently selected (any may be None)."""
        node = self._parameterNode
        if node is None:
            return None, None, None
        return (node.GetNodeReference("InputVolume"), node.GetNodeReference("Segmentation"),
                node.GetParameter("SegmentID") or None)

    def updateGUIFromParameterNode(self, caller=None, event=None):
        if self._parameterNode is None or self._updatingGUI:
            return
        self._updatingGUI = True
        try:
            volume, segmentation, segmentId = self._selection()
            self.ui.inputVolumeSelector.setCurrentNode(volume)
            self.ui.segmentSelector.setCurrentNode(segmentation)
            if segmentId:
                self.ui.segmentSelector.setCurrentSegmentID(segmentId)
            isFile = self._parameterNode.GetParameter("ModelSource") == "file"
            self.ui.modelSelector.setCurrentIndex(1 if isFile else 0)
            self.ui.checkpointPathLineEdit.setEnabled(isFile)
            self.ui.checkpointPathLineEdit.currentPath = self._parameterNode.GetParameter("CheckpointPath")
            self.ui.deviceSelector.setCurrentIndex(max(0, self.ui.deviceSelector.findData(
                self._parameterNode.GetParameter("Device"))))
            self.ui.followLargeObjectsCheckBox.checked = (
                self._parameterNode.GetParameter("FollowLargeObjects") != "false")
            ready = bool(volume and segmentation and segmentId)
            positive, negative = (prompt_nodes(segmentation, segmentId) if ready else (None, None))
            self.ui.positivePlaceWidget.setCurrentNode(positive)
            self.ui.negativePlaceWidget.setCurrentNode(negative)
            self.ui.positivePlaceWidget.setEnabled(ready)
            self.ui.negativePlaceWidget.setEnabled(ready)
            self.ui.nextSegmentButton.setEnabled(segmentation is not None)
            self.ui.resetButton.setEnabled(ready)
            interactive = self.logic.interactive
            self.ui.undoButton.setEnabled(ready and interactive.can_undo(volume, segmentation, segmentId))
            self.ui.redoButton.setEnabled(ready and interactive.can_redo(volume, segmentation, segmentId))
            if segmentation is not None:
                show_only_segment_prompts(segmentation, segmentId)
            self._observePointNodes(positive, negative)
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

    # ---- point nodes -----------------------------------------------------------------------------------------------
    def _observePointNodes(self, *nodes):
        nodes = [node for node in nodes if node is not None]
        if nodes == self._observedPointNodes:
            return
        for node in self._observedPointNodes:
            self.removeObserver(node, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self.onPointsChanged)
            self.removeObserver(node, slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent, self.onPointsChanged)
            self.removeObserver(node, slicer.vtkMRMLMarkupsNode.PointRemovedEvent, self.onPointsChanged)
        for node in nodes:
            self.addObserver(node, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self.onPointsChanged)
            self.addObserver(node, slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent, self.onPointsChanged)
            self.addObserver(node, slicer.vtkMRMLMarkupsNode.PointRemovedEvent, self.onPointsChanged)
        self._observedPointNodes = nodes

    def onPointsChanged(self, caller=None, event=None):
        """A point was placed, moved or removed: recompute the segment in the background."""
        self.requestSegmentation()

    def onPlacePositive(self):
        if self.ui.positivePlaceWidget.enabled:
            self.ui.positivePlaceWidget.setPlaceModeEnabled(True)

    def onPlaceNegative(self):
        if self.ui.negativePlaceWidget.enabled:
            self.ui.negativePlaceWidget.setPlaceModeEnabled(True)

    def onStopPlacing(self):
        for placeWidget in (self.ui.positivePlaceWidget, self.ui.negativePlaceWidget):
            placeWidget.setPlaceModeEnabled(False)

    # ---- model loading ---------------------------------------------------------------------------------------------
    def _ensureModel(self, then):
        """Install dependencies (asking first) and load the model in the background, then call ``then``."""
        checkpoint = SAMMed3DSlicerLogic.checkpointFromParameters(self._parameterNode)
        if checkpoint is None:
            self._setStatus("Choose a local weights file (Model section), or the SAM-Med3D-turbo weights.")
            return
        self.logic.setModelOptions(checkpoint, self._parameterNode.GetParameter("Device"))
        self.logic.setFollowLargeObjects(self._parameterNode.GetParameter("FollowLargeObjects") != "false")
        if self.logic.interactive.model_loaded:
            then()
            return
        if not SAMMed3DSlicerLogic.ensureDependencies():
            self._setStatus("PyTorch and the other dependencies are needed to run SAM-Med3D.")
            return
        if self._jobs.busy("model"):
            return
        self._progress = slicer.util.createProgressDialog(
            windowTitle="SAM-Med3D", labelText="Loading the SAM-Med3D weights...", maximum=0)
        self._progress.setCancelButton(None)
        self._download = None  # (bytes done, bytes total), written by the worker thread, shown by the timer
        started = time.perf_counter()

        def progress(done, total):
            self._download = (done, total)

        def done(_):
            self._closeProgress()
            self._setStatus("Model loaded in %.1f s." % (time.perf_counter() - started))
            then()

        self._jobs.submit("model", lambda: self.logic.interactive.load_model(progress=progress), done, self._onError,
                          self._showDownloadProgress)
        self._pollTimer.start()

    def _showDownloadProgress(self):
        if self._progress is None or self._download is None:
            return
        done, total = self._download
        if total:
            self._progress.setMaximum(100)
            self._progress.setValue(int(100 * done / total))
        self._progress.setLabelText("Downloading the SAM-Med3D-turbo weights: %.0f / %s MB"
                                    % (done / 1e6, "%.0f" % (total / 1e6) if total else "?"))

    def onLoadModel(self):
        self._ensureModel(lambda: None)

    def _closeProgress(self):
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    # ---- segmentation requests ----------------------------------------------------------------------------------------
    def requestSegmentation(self):
        volume, segmentation, segmentId = self._selection()
        if not (volume and segmentation and segmentId):
            return
        self._ensureModel(lambda: self._submitSegmentation(volume, segmentation, segmentId))

    def _submitSegmentation(self, volume, segmentation, segmentId):
        interactive = self.logic.interactive
        positive, negative = prompt_nodes(segmentation, segmentId)
        try:
            request = interactive.prepare(volume, segmentation, segmentId, positive, negative)
        except Exception as error:  # noqa: BLE001 - shown to the user, logged with traceback
            self._onError(error)
            return
        started = time.perf_counter()
        self._setStatus("Segmenting (%d points)..." % len(request.clicks))

        def done(mask):
            try:
                update = interactive.apply(request, mask, volume, segmentation)
            except Exception as error:  # noqa: BLE001
                self._onError(error)
                return
            update.timings["total"] = time.perf_counter() - started + request.read_seconds
            self._setStatus("%d points; %s" % (update.clicks, _format_timings(update.timings)))
            self.updateGUIFromParameterNode()

        self._jobs.submit("segment", lambda: interactive.compute(request), done, self._onError)
        self._pollTimer.start()

    def _pollJobs(self):
        """Main thread: hand finished background results to their callbacks (stale ones are dropped)."""
        if not self._jobs.poll():
            self._pollTimer.stop()

    def _onError(self, error):
        self._closeProgress()
        from sammed3d.errors import SamMed3DError

        if isinstance(error, SamMed3DError):
            message = str(error)
        else:
            logging.error("SAM-Med3D failed", exc_info=(type(error), error, error.__traceback__))
            message = "SAM-Med3D failed: %s (details in the Python console)" % error
        self._setStatus(message)
        slicer.util.errorDisplay(message, windowTitle="SAM-Med3D")

    def _setStatus(self, text):
        self.ui.statusLabel.setText(text)

    # ---- buttons ---------------------------------------------------------------------------------------------------
    def onUndo(self):
        volume, segmentation, segmentId = self._selection()
        if volume and segmentation and segmentId:
            self.logic.interactive.remove_last_click(volume, segmentation, segmentId)  # the observer recomputes

    def onRedo(self):
        volume, segmentation, segmentId = self._selection()
        if volume and segmentation and segmentId:
            self.logic.interactive.restore_click(volume, segmentation, segmentId)

    def onReset(self):
        volume, segmentation, segmentId = self._selection()
        if not (volume and segmentation and segmentId):
            return
        self.onStopPlacing()
        positive, negative = prompt_nodes(segmentation, segmentId)
        self._observePointNodes()  # removing the points must not trigger a recomputation
        self._jobs.invalidate("segment")  # a result still on its way must not overwrite the reset
        self.logic.interactive.reset(volume, segmentation, segmentId, positive, negative)
        self._setStatus("Segment reset.")
        self.updateGUIFromParameterNode()

    def onNextSegment(self):
        """Add an empty segment, select it and start placing positive points."""
        _, segmentation, _ = self._selection()
        if segmentation is None:
            segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
            segmentation.CreateDefaultDisplayNodes()
            self.ui.segmentSelector.setCurrentNode(segmentation)
        segmentId = segmentation.GetSegmentation().AddEmptySegment()
        self.ui.segmentSelector.setCurrentSegmentID(segmentId)
        self.updateParameterNodeFromGUI()
        self.onPlacePositive()


def ctkPathFilters():
    import ctk

    return ctk.ctkPathLineEdit.Files | ctk.ctkPathLineEdit.Readable


def _format_timings(timings):
    order = ("total", "embedding", "encoder", "decoder", "read", "write")
    keys = [key for key in order if key in timings] + sorted(key for key in timings if key not in order)
    return ", ".join("%s %.2f s" % (key, timings[key]) for key in keys)


class SAMMed3DSlicerTest(ScriptedLoadableModuleTest):
    """In-Slicer self-test: the bundled CT, a click in the liver, the segment compared with a stored reference."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_click_segments_reference()

    def test_click_segments_reference(self):
        from SAMMed3DSlicerLib.self_test_case import SelfTestCase

        case = SelfTestCase()
        self.delayDisplay("Loading %s" % case.image_path)
        volume = slicer.util.loadVolume(case.image_path)
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        segmentId = segmentation.GetSegmentation().AddEmptySegment("liver")
        logic = SAMMed3DSlicerLogic(checkpoint=case.checkpoint, device="cpu")
        positive, negative = logic.promptNodes(segmentation, segmentId)
        positive.AddControlPoint(*case.click_ras)
        self.delayDisplay("Segmenting")
        started = time.perf_counter()
        update = logic.segment(volume, segmentation, segmentId)
        self.delayDisplay("Segmented in %.1f s: %s" % (time.perf_counter() - started, update.timings))
        score = case.compare(segmentation, segmentId, volume)
        self.assertGreaterEqual(score, case.min_dice, "Dice with the stored reference: %.3f" % score)
        self.delayDisplay("Test passed (Dice %.3f)" % score)
