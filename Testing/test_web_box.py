"""The web page's "Box" prompt in a real browser (Debian's chromium through playwright): the Box button (accessible
name "Box", key x) draws the segment's ROI in the axial slice view with two clicks, Slicer's ROI widget leaves place
mode when it is drawn, and that is one computation with a box (SAM-Med3D: a click at its centre); Save writes the box
beside OUT as a Slicer ROI file."""
import asyncio
import os

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")  # before any VTK window exists

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402

from test_web_browser import expected_click_ras, segment_voxel_count, until  # noqa: E402
from web_harness import VIEWPORT, chromium_options, free_port  # noqa: E402


class CountingLogic(object):
    """Counts the computations and remembers their boxes (wraps the real logic's compute)."""

    def __init__(self, logic):
        self.boxes = []
        compute = logic.compute

        def counted(request):
            self.boxes.append(request.box)
            return compute(request)

        logic.compute = counted


async def draw_box_in_browser(tmp_path, ct_path):
    from SAMMed3DSlicerLib.box_prompt import box_node
    from SAMMed3DSlicerLib.interactive_logic import InteractiveSegmentationLogic
    from sammed3d_web.app import WebApp
    from sammed3d_web.scene_io import read_image_path

    logic = InteractiveSegmentationLogic("demo", "cpu", max_rois=1)
    logic.load_model()
    counter = CountingLogic(logic)
    from trame.app import get_server

    # a trame server of its own: another in-process test may have run (and stopped) the default one
    app = WebApp(logic, tmp_path / "out.seg.nrrd", server=get_server(name="sammed3d-box-test", client_type="vue3"))
    port = free_port()
    app.start("127.0.0.1", port, exec_mode="task")
    await app.server.ready
    app.load(read_image_path(ct_path), None, name="CT")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(**chromium_options())
        page = await browser.new_page(viewport=VIEWPORT)
        await page.goto("http://127.0.0.1:%d/" % port)
        button = page.get_by_role("button", name="Box", exact=True)
        await button.wait_for()
        view_element = page.locator("img.image-display-area").first
        await view_element.wait_for()
        await button.click()
        await until(lambda: app.annotator.mode == "box", what="box mode")
        box = await view_element.bounding_box()
        x0, y0 = box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.45
        x1, y1 = box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.55
        axial = next(view for view in app.slicer_app.view_manager.get_slice_views()
                     if view.get_orientation() == "Axial")
        corners = [expected_click_ras(axial, box, x, y) for x, y in ((x0, y0), (x1, y1))]
        await page.mouse.move(x0 - 10, y0 - 10)
        await page.mouse.move(x0, y0, steps=3)
        await page.mouse.click(x0, y0)  # first corner
        await page.mouse.move(x1, y1, steps=6)
        assert counter.boxes == [], "a box still being drawn triggers nothing"
        await page.mouse.click(x1, y1)  # opposite corner: drawn, place mode ends
        await until(lambda: app.annotator.mode is None and counter.boxes and not app.annotator.busy(),
                    what="the box computed")
        roi = box_node(app.annotator.segmentation_node, app.annotator.segment_id)
        spacing = np.array(app.annotator.volume_node.GetSpacing())
        centre = np.array(roi.GetCenter())
        expected_centre = (corners[0] + corners[1]) / 2
        assert np.all(np.abs(centre[:2] - expected_centre[:2]) <= spacing[:2]), (centre, expected_centre)
        size = np.array(roi.GetSize())
        assert np.all(np.abs(size[:2] - np.abs(corners[1] - corners[0])[:2]) <= 2 * spacing[:2]), size
        assert len(counter.boxes) == 1 and counter.boxes[0] is not None  # one computation, with the box
        assert segment_voxel_count(app) > 0
        assert "a box" in await page.locator("#sam-status").inner_text()
        voxels = segment_voxel_count(app)
        await page.keyboard.press("x")  # the key enters box mode again; Esc leaves it without a new box:
        await until(lambda: app.annotator.mode == "box", what="box mode by key")
        await page.keyboard.press("Escape")
        await until(lambda: app.annotator.mode is None, what="navigate")
        await asyncio.sleep(0.5)
        assert len(counter.boxes) == 1 and segment_voxel_count(app) == voxels  # the previous box is back, as is
        np.testing.assert_allclose(roi.GetCenter(), centre, atol=1e-6)

        # Save writes the box beside OUT as a Slicer ROI file that `sammed3d segment --roi` reads
        from SAMMed3DSlicerLib.box_prompt import current_box
        from sammed3d.roi_markup import read_roi_box

        await page.get_by_role("button", name="Save", exact=True).click()
        saved = tmp_path / ("%s.box.mrk.json" % app.annotator.segments()[0]["name"])
        await until(lambda: saved.exists(), what="the saved box")
        expected = current_box(app.annotator.volume_node, roi)
        np.testing.assert_allclose(read_roi_box(saved).corner1, expected.corner1, atol=1e-6)
        np.testing.assert_allclose(read_roi_box(saved).corner2, expected.corner2, atol=1e-6)
        await browser.close()


@pytest.mark.slow
def test_draw_a_box_in_a_real_browser(tmp_path, ct_3mm_path):
    asyncio.run(draw_box_in_browser(tmp_path, ct_3mm_path))
