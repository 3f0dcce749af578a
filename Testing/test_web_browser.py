"""`sammed3d web` in a real browser (Debian's chromium driven by playwright): clicks land where the slice view says,
the overlay appears, undo / redo, negative clicks, save, reload, upload, the token, and the command line end to end.

The in-process test runs the trame server and playwright's async API on one event loop, so it can read the server's
MRML scene between browser actions without threads.
"""
import asyncio
import http.cookiejar
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")  # before any VTK window exists

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from web_harness import (  # noqa: E402
    REPO, SCREENSHOTS, VIEWPORT, changed_fraction, chromium_options, free_port, not_blank, start_cli_server, stop,
    web_env,
)

SAVE_SCREENSHOTS = os.environ.get("SAMMED3D_SAVE_SCREENSHOTS") == "1"  # refresh docs/screenshots


async def until(condition, timeout=60.0, interval=0.1, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        await asyncio.sleep(interval)
    raise AssertionError("timed out waiting for " + what)


def segment_voxel_count(app):
    from SAMMed3DSlicerLib.segment_io import read_segment_in_volume_grid

    annotator = app.annotator
    mask = read_segment_in_volume_grid(annotator.segmentation_node, annotator.segment_id, annotator.volume_node)
    return 0 if mask is None else int(sitk.GetArrayFromImage(mask).sum())


def expected_click_ras(view, box, x_css, y_css):
    """RAS of a page position in a slice view, from the view's own XY-to-RAS (VTK's y axis points up)."""
    width, height = view.render_window().GetSize()
    x = (x_css - box["x"]) * width / box["width"]
    y = height - (y_css - box["y"]) * height / box["height"]
    matrix = view.get_view_node().GetXYToRAS()
    xy_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    return (xy_to_ras @ np.array([x, y, 0.0, 1.0]))[:3]


def control_points(node):
    positions = []
    for index in range(node.GetNumberOfControlPoints()):
        position = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(index, position)
        positions.append(position)
    return np.array(positions)


async def click_and_wait(page, app, x, y, clicks_expected):
    await page.mouse.move(x - 20, y - 20)
    await page.mouse.move(x, y, steps=4)
    await page.mouse.click(x, y)
    await until(lambda: len(app.annotator.clicks()) == clicks_expected and not app.annotator.busy(),
                what="%d click(s) computed" % clicks_expected)
    await page.mouse.move(5, VIEWPORT["height"] - 5)  # leave the view: the cursor's preview point goes away


async def settled_screenshot(locator, page):
    await asyncio.sleep(1.2)  # let the remote view stream its newest frame
    return await locator.screenshot()


async def annotate_in_browser(tmp_path, ct_path):
    from SAMMed3DSlicerLib.interactive_logic import InteractiveSegmentationLogic
    from sammed3d_web.app import WebApp

    logic = InteractiveSegmentationLogic("demo", "cpu", max_rois=1)
    logic.load_model()
    output = tmp_path / "out.seg.nrrd"
    app = WebApp(logic, output)
    port = free_port()
    app.start("127.0.0.1", port, exec_mode="task")
    await app.server.ready
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(**chromium_options())
        page = await browser.new_page(viewport=VIEWPORT)
        await page.goto("http://127.0.0.1:%d/" % port)
        positive = page.get_by_role("button", name="Positive", exact=True)
        await positive.wait_for()
        assert await positive.is_disabled()  # nothing loaded yet

        # Upload the CT through the page's file input.
        await page.locator("input[type=file]").first.set_input_files(str(ct_path))
        await until(lambda: app.annotator.volume_node is not None, what="the uploaded image")
        view_element = page.locator("img.image-display-area").first
        await view_element.wait_for()
        before = await settled_screenshot(view_element, page)
        assert not_blank(before)

        # Positive mode, click the middle of the first slice view (axial).
        await positive.click()
        assert app.annotator.mode == "positive"
        box = await view_element.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        axial = next(view for view in app.slicer_app.view_manager.get_slice_views()
                     if view.get_orientation() == "Axial")
        expected = expected_click_ras(axial, box, x, y)
        await click_and_wait(page, app, x, y, 1)
        positive_node, negative_node = app.annotator.prompts()
        placed = control_points(positive_node)
        spacing = np.array(app.annotator.volume_node.GetSpacing())
        assert placed.shape == (1, 3)
        assert np.all(np.abs(placed[0] - expected) <= spacing), (placed[0], expected, spacing)
        one_click = segment_voxel_count(app)
        assert one_click > 100
        after = await settled_screenshot(view_element, page)
        shown = changed_fraction(before, after, (int(box["width"] / 2 - 40), int(box["height"] / 2 - 40),
                                                 int(box["width"] / 2 + 40), int(box["height"] / 2 + 40)))
        assert shown > 0.2, "the overlay did not appear where the mask is (%.3f of pixels changed)" % shown
        assert "encoder" in await page.locator("#sam-status").inner_text()  # the last timings
        if SAVE_SCREENSHOTS:
            await page.screenshot(path=str(SCREENSHOTS / "web_positive_click.png"))

        # Undo removes the point and the segment; redo brings both back.
        await page.get_by_role("button", name="Undo", exact=True).click()
        await until(lambda: positive_node.GetNumberOfControlPoints() == 0 and not app.annotator.busy()
                    and segment_voxel_count(app) == 0, what="undo")
        undone = await settled_screenshot(view_element, page)
        assert changed_fraction(after, undone) > 0.002
        await page.get_by_role("button", name="Redo", exact=True).click()
        await until(lambda: positive_node.GetNumberOfControlPoints() == 1 and not app.annotator.busy()
                    and segment_voxel_count(app) == one_click, what="redo")

        # A negative click (keyboard shortcut n) inside the mask, to the right of the first point.
        await page.keyboard.press("n")
        await until(lambda: app.annotator.mode == "negative", what="negative mode")
        await click_and_wait(page, app, x + box["width"] * 0.04, y, 2)
        assert negative_node.GetNumberOfControlPoints() == 1
        assert [positive for _, positive in app.annotator.clicks()] == [True, False]
        refined = segment_voxel_count(app)
        assert refined != one_click
        if SAVE_SCREENSHOTS:
            await asyncio.sleep(1.2)
            await page.screenshot(path=str(SCREENSHOTS / "web_negative_click.png"))

        # Save, then download both files from the page.
        await page.get_by_role("button", name="Save", exact=True).click()
        await until(lambda: output.exists(), what="the saved segmentation")
        points = json.loads((tmp_path / "Segment_1.mrk.json").read_text())["markups"][0]["controlPoints"]
        assert [p["description"] for p in points] == ["", "negative"]
        async with page.expect_download() as download_info:
            await page.get_by_text("Download segmentation").click()
        download = await download_info.value
        assert open(await download.path(), "rb").read() == output.read_bytes()

        # Reload: open the saved segmentation through the page; the segment comes back with its voxels.
        app.annotator.reset()
        assert segment_voxel_count(app) == 0
        await page.locator("input[type=file]").nth(1).set_input_files(str(output))
        await until(lambda: app.annotator.segments() and app.annotator.segments()[0]["name"] == "Segment_1"
                    and segment_voxel_count(app) == refined, what="the reloaded segmentation")

        # What `sammed3d web CT -o OUT` does when OUT exists: the image with OUT's segments, ready to refine.
        from sammed3d_web.scene_io import read_image_path

        app.load(read_image_path(ct_path), output, name="CT")
        assert [row["name"] for row in app.annotator.segments()] == ["Segment_1"]
        assert segment_voxel_count(app) == refined
        await page.get_by_role("button", name="Positive", exact=True).click()
        await click_and_wait(page, app, x, y - box["height"] * 0.04, 1)  # refines the loaded segment
        assert segment_voxel_count(app) > 0

        # The page stays responsive while the model works: a slow computation (3 s) runs off the event loop, so
        # adding a segment meanwhile takes effect at once, and the result still lands in the segment clicked.
        compute = app.annotator.logic.compute

        def slow_compute(request):
            time.sleep(3.0)
            return compute(request)

        app.annotator.logic.compute = slow_compute
        clicked = app.annotator.segment_id
        await page.mouse.move(x, y + box["height"] * 0.04, steps=3)
        await page.mouse.click(x, y + box["height"] * 0.04)
        await until(lambda: app.annotator.busy(), what="the slow computation")
        started = time.time()
        await page.get_by_role("button", name="Add", exact=True).click()
        await until(lambda: len(app.annotator.segments()) == 2, timeout=2.0, what="a segment added while busy")
        assert time.time() - started < 2.0 and app.annotator.busy()
        await until(lambda: not app.annotator.busy(), what="the slow result")
        assert app.annotator.segment_id != clicked and len(app.annotator.clicks(clicked)) == 2
        app.annotator.logic.compute = compute
        await browser.close()


@pytest.mark.slow
def test_annotate_in_a_real_browser(tmp_path, ct_3mm_path):
    """Upload, a positive click at the slice view's RAS, overlay, undo / redo, a negative click, save, download,
    reload."""
    asyncio.run(annotate_in_browser(tmp_path, ct_3mm_path))


def dice(a, b):
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.mark.slow
def test_command_line_click_save_and_replay(tmp_path, ct_3mm_path):
    """The issue's must-show: `sammed3d web CT -o OUT`, Positive, a click in the middle of the first slice view,
    Save; OUT holds the segment, the .mrk.json beside it replays it with `sammed3d segment` (Dice >= 0.98)."""
    output = tmp_path / "OUT.seg.nrrd"
    port = free_port()
    server = start_cli_server([str(ct_3mm_path), "--checkpoint", "demo", "--device", "cpu", "--host", "127.0.0.1",
                               "-o", str(output)], port, tmp_path / "server.log")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(**chromium_options())
            page = browser.new_page(viewport=VIEWPORT)
            page.goto("http://127.0.0.1:%d/" % port)
            view = page.locator("img.image-display-area").first
            view.wait_for()
            page.get_by_role("button", name="Positive", exact=True).click()
            box = view.bounding_box()
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x - 10, y - 10)
            page.mouse.move(x, y, steps=3)
            page.mouse.click(x, y)
            status = page.locator("#sam-status")
            status.filter(has_text="encoder").wait_for(timeout=60000)
            page.get_by_role("button", name="Save", exact=True).click()
            status.filter(has_text="Saved").wait_for(timeout=30000)
            page.mouse.move(5, VIEWPORT["height"] - 5)
            time.sleep(1.0)
            screenshot = page.screenshot()
            assert not_blank(screenshot)
            if SAVE_SCREENSHOTS:
                (SCREENSHOTS / "web_saved.png").write_bytes(screenshot)
            browser.close()
    finally:
        stop(server)
    saved = sitk.ReadImage(str(output))
    assert saved.GetMetaData("Segment0_Name") == "Segment_1"
    web_mask = sitk.GetArrayFromImage(saved) > 0
    assert web_mask.sum() > 100
    markups = tmp_path / "Segment_1.mrk.json"
    assert len(json.loads(markups.read_text())["markups"][0]["controlPoints"]) == 1
    replay = tmp_path / "replay.nii.gz"
    result = subprocess.run([sys.executable, "-m", "sammed3d", "segment", str(ct_3mm_path), "--points", str(markups),
                             "--checkpoint", "demo", "--device", "cpu", "-o", str(replay)],
                            capture_output=True, text=True, env=web_env(), cwd=str(REPO))
    assert result.returncode == 0, result.stderr
    replayed = sitk.ReadImage(str(replay))
    assert replayed.GetSize() == saved.GetSize()
    np.testing.assert_allclose(replayed.GetOrigin(), saved.GetOrigin(), atol=1e-3)
    assert dice(web_mask, sitk.GetArrayFromImage(replayed)) >= 0.98


@pytest.mark.slow
@pytest.mark.parametrize("mode", [[], ["--single-scene"]], ids=["scene-per-tab", "single-scene"])
def test_a_token_guards_the_page_and_its_websocket(tmp_path, mode):
    # (without --token, any address but localhost is refused: Testing/test_web_cli.py)
    port = free_port()
    server = start_cli_server(["--checkpoint", "demo", "--device", "cpu", "--token", "s3cret",
                               "-o", str(tmp_path / "out.seg.nrrd")] + mode, port, tmp_path / "server.log")
    try:
        for url in ("http://127.0.0.1:%d/" % port, "http://127.0.0.1:%d/index.html?token=wrong" % port):
            with pytest.raises(urllib.error.HTTPError) as refused_request:
                urllib.request.urlopen(url, timeout=10)
            assert refused_request.value.code == 401
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        probe = "/?token=s3cret" if mode else "/status?token=s3cret"  # (the page would take a scene: keep it for later)
        assert opener.open("http://127.0.0.1:%d%s" % (port, probe), timeout=10).status == 200
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(**chromium_options())
            page = browser.new_page(viewport=VIEWPORT)
            page.goto("http://127.0.0.1:%d/?token=s3cret" % port)
            page.locator("img.image-display-area").first.wait_for(timeout=60000)  # the websocket got through
            address = page.url.split("?")[0]  # (the front's redirect already dropped the token from the address)
            assert page.context.request.get(address).status == 200  # its cookie
            assert browser.new_context().request.get(address).status == 401  # even knowing the scene's address
            browser.close()
    finally:
        stop(server)
