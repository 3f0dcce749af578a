#!/usr/bin/env python
"""Render the Extensions Index screenshot from real Slicer views (slicer-core / trame-slicer displayable managers,
offscreen): the bundled CT, a segment made by the module's controller from simulated clicks, and its points.

    VTK_DEFAULT_OPENGL_WINDOW=vtkOSOpenGLRenderWindow python scripts/make_screenshot.py
        [--checkpoint demo] [--organ liver] [--clicks 6] [--max-rois 1] [-o Screenshots/SAMMed3DSlicer_1.png]

Needs trame-slicer (the [web] extra) and an offscreen OpenGL (Debian: libosmesa6, or EGL). The clicks come from the
evaluation's "ritm" click simulator against the organ's label; each one goes through the module's real path
(markups -> InteractiveSegmentationController -> background job -> segment). Prints the Dice after every click.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkOSOpenGLRenderWindow")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "SAMMed3DSlicer"))
CASE = REPO / "Testing" / "Data" / "ct_abdomen_3mm"
PANEL = 440


def grab(view):
    """The view's pixels (rows top to bottom, RGB)."""
    import vtk
    from vtk.util import numpy_support

    view.render()
    capture = vtk.vtkWindowToImageFilter()
    capture.SetInput(view.render_window())
    capture.ReadFrontBufferOff()
    capture.Update()
    image = capture.GetOutput()
    width, height, _ = image.GetDimensions()
    pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
    return pixels[::-1, :, :3].copy()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="demo", help="weights: demo (bundled), turbo, or a file")
    parser.add_argument("--organ", default="liver")
    parser.add_argument("--clicks", type=int, default=6)
    parser.add_argument("--max-rois", type=int, default=1,
                        help="1: the official single 128^3 region (default); the widget's 'follow structures "
                             "larger than 192 mm' uses 6")
    parser.add_argument("-o", "--output", default=str(REPO / "Screenshots" / "SAMMed3DSlicer_1.png"))
    args = parser.parse_args()

    import numpy as np
    import SimpleITK as sitk
    import vtk
    from PIL import Image, ImageDraw
    from trame_slicer.core import SlicerApp
    from trame_slicer.views import DirectViewFactory, ViewLayoutDefinition

    from sammed3d.evaluation.clicks import make_clicker
    from SAMMed3DSlicerLib.background import BackgroundJobs
    from SAMMed3DSlicerLib.controller import ControllerView, InteractiveSegmentationController
    from SAMMed3DSlicerLib.interactive_logic import InteractiveSegmentationLogic
    from SAMMed3DSlicerLib.segment_io import read_segment_in_volume_grid

    labels = {name: int(value) for value, name in json.loads((CASE / "labels.json").read_text()).items()}
    label_image = sitk.ReadImage(str(CASE / "labels.nii.gz"))
    truth = sitk.GetArrayFromImage(label_image) == labels[args.organ]

    app = SlicerApp()
    app.view_manager.register_factory(DirectViewFactory(do_render_offscreen=True))
    views = [app.view_manager.create_view(ViewLayoutDefinition.axial_view()),
             app.view_manager.create_view(ViewLayoutDefinition.coronal_view()),
             app.view_manager.create_view(ViewLayoutDefinition.threed_view())]
    for view in views:
        view.render_window().SetSize(PANEL, PANEL)
    volume = app.io_manager.load_volumes(str(CASE / "image.nii.gz"))[-1]
    app.display_manager.show_volume_in_slice_background(volume)
    volume.GetDisplayNode().SetAutoWindowLevel(False)
    volume.GetDisplayNode().SetWindowLevel(400, 50)  # abdomen window

    segmentation = app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segment_id = segmentation.GetSegmentation().AddEmptySegment("", args.organ, [0.85, 0.55, 0.2])

    class PrintView(ControllerView):
        def status(self, text):
            print("  status:", text)

        def error(self, message):
            raise SystemExit("error: %s" % message)

    controller = InteractiveSegmentationController(
        InteractiveSegmentationLogic(checkpoint=args.checkpoint, device="cpu", max_rois=args.max_rois),
        BackgroundJobs(), PrintView(),
        app.scene)
    controller.select(volume, segmentation, segment_id)
    positive, negative = controller.prompt_nodes()
    for node in (positive, negative):
        display = node.GetDisplayNode()
        display.SetGlyphScale(4.0)
        display.SetSliceProjection(True)  # show every point in the slice views, projected
        display.SetSliceProjectionOpacity(0.9)

    ijk_to_ras = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijk_to_ras)
    clicker = make_clicker("ritm", 0, "screenshot", args.organ)
    prediction = np.zeros_like(truth)
    first_ras = None
    started = time.perf_counter()
    for number in range(args.clicks):
        click = clicker.next_click(truth, prediction, label_image.GetSpacing()[::-1])
        if click is None:
            break
        k, j, i = click.index
        ras = ijk_to_ras.MultiplyPoint((i, j, k, 1))[:3]
        first_ras = first_ras or ras
        (positive if click.positive else negative).AddControlPoint(*ras)  # the controller observes the lists
        while controller.poll():
            pass
        mask = read_segment_in_volume_grid(segmentation, segment_id, volume)
        prediction = (sitk.GetArrayFromImage(mask) > 0) if mask is not None else np.zeros_like(truth)
        dice = 2.0 * (prediction & truth).sum() / (prediction.sum() + truth.sum())
        print("click %d (%s): Dice %.3f with the %s label" % (number + 1, "+" if click.positive else "-", dice,
                                                              args.organ))
    print("%d clicks in %.1f s" % (number + 1, time.perf_counter() - started))

    segmentation.CreateClosedSurfaceRepresentation()
    views[0].set_slice_value(first_ras[2])
    views[1].set_slice_value(first_ras[1])
    for view in views:
        view.reset_view()
    views[2].renderer().GetActiveCamera().Elevation(-70)  # anterior view
    views[2].renderer().ResetCamera()
    views[2].renderer().GetActiveCamera().Zoom(1.3)
    panels = [grab(view) for view in views]

    canvas = Image.fromarray(np.concatenate(panels, axis=1))
    draw = ImageDraw.Draw(canvas)
    draw.text((10, 10), "SAM-Med3D in 3D Slicer: %s from %d points (%s weights)" % (
        args.organ, len(controller.logic.clicks(volume, segmentation, segment_id)), args.checkpoint),
        fill=(255, 255, 0))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(str(output), optimize=True)
    print("wrote %s (%dx%d)" % (output, canvas.width, canvas.height))
    controller.close()


if __name__ == "__main__":
    main()
