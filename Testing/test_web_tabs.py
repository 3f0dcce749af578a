"""Several browser tabs on one `sammed3d web`: each tab its own scene (a child process), in a real browser.

Two tabs in two browser contexts: a click in tab A shows in A and not in B (B's segment list and views unchanged);
each saves to its own files (A to OUT, B to OUT-scene2/OUT); a third tab beyond --max-scenes gets the busy page; no
scene process outlives the server, and A's unsaved last click is saved beside OUT when its scene stops.
"""
import json
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from playwright.sync_api import sync_playwright

from web_harness import VIEWPORT, changed_fraction, chromium_options, free_port, start_cli_server, stop


def open_tab(browser, url):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(url)
    view = page.locator("img.image-display-area").first
    view.wait_for(timeout=120000)
    page.get_by_role("button", name="Positive", exact=True).wait_for()
    return page, view


def click_positive(page, view, dx=0.0, dy=0.0):
    page.get_by_role("button", name="Positive", exact=True).click()
    box = view.bounding_box()
    x, y = box["x"] + box["width"] * (0.5 + dx), box["y"] + box["height"] * (0.5 + dy)
    page.mouse.move(x - 10, y - 10)
    page.mouse.move(x, y, steps=3)
    page.mouse.click(x, y)
    page.locator("#sam-status").filter(has_text="encoder").wait_for(timeout=90000)
    page.mouse.move(5, VIEWPORT["height"] - 5)


def save(page):
    page.get_by_role("button", name="Save", exact=True).click()
    page.locator("#sam-status").filter(has_text="Saved").wait_for(timeout=30000)


def settled(view):
    time.sleep(1.5)  # the remote view streams its newest frame
    return view.screenshot()


def segments_text(page):
    return page.locator(".v-list[role=list]").first.inner_text()


def scene_processes(marker):
    """Process ids whose command line mentions ``marker`` (this test's output folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                state = (entry / "stat").read_text().split(")")[-1].split()[0]
            except (OSError, IndexError):
                continue
            if marker in cmdline and "--scene-child" in cmdline and state != "Z":
                found.append(int(entry.name))
    return found


def saved_points(path):
    return [point["position"] for point in json.loads(path.read_text())["markups"][0]["controlPoints"]]


@pytest.mark.slow
def test_two_tabs_have_separate_scenes_and_saves(tmp_path, ct_3mm_path):
    output = tmp_path / "OUT.seg.nrrd"
    scene2 = tmp_path / "OUT-scene2" / "OUT.seg.nrrd"
    port = free_port()
    url = "http://127.0.0.1:%d/" % port
    server = start_cli_server([str(ct_3mm_path), "--checkpoint", "demo", "--device", "cpu", "-o", str(output),
                               "--max-scenes", "2"], port, tmp_path / "server.log")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(**chromium_options())
            page_a, view_a = open_tab(browser, url)
            page_b, view_b = open_tab(browser, url)
            assert page_a.url != page_b.url  # /s/<scene>/: each tab its own scene
            assert page_a.get_by_text("Output: %s/OUT.seg.nrrd" % tmp_path.name).is_visible()
            assert page_b.get_by_text("Output: OUT-scene2/OUT.seg.nrrd").is_visible()
            assert len(scene_processes(str(tmp_path))) == 2

            # A click in A: A's segment gets its point; B's list and views stay as they were.
            b_list, b_view = segments_text(page_b), settled(view_b)
            a_list = segments_text(page_a)
            click_positive(page_a, view_a)
            assert segments_text(page_a) != a_list and "1 pt" in segments_text(page_a)
            assert segments_text(page_b) == b_list and "1 pt" not in b_list
            assert changed_fraction(b_view, settled(view_b)) < 0.002
            assert "encoder" not in page_b.locator("#sam-status").inner_text()

            # B clicks elsewhere; both save; each file holds its own tab's work.
            click_positive(page_b, view_b, dx=0.06, dy=0.04)
            save(page_a)
            saved_a = output.read_bytes()
            save(page_b)
            assert output.read_bytes() == saved_a  # B's save left A's file alone
            points_a = saved_points(tmp_path / "Segment_1.mrk.json")
            points_b = saved_points(scene2.parent / "Segment_1.mrk.json")
            assert len(points_a) == len(points_b) == 1
            assert np.linalg.norm(np.subtract(points_a[0], points_b[0])) > 5.0
            mask_a = sitk.GetArrayFromImage(sitk.ReadImage(str(output))) > 0
            mask_b = sitk.GetArrayFromImage(sitk.ReadImage(str(scene2))) > 0
            assert mask_a.sum() > 100 and mask_b.sum() > 100 and (mask_a != mask_b).any()
            with page_b.expect_download() as download_info:  # B's download link is B's file
                page_b.get_by_text("Download segmentation").click()
            assert Path(download_info.value.path()).read_bytes() == scene2.read_bytes()

            # A third tab (in A's browser context) is beyond --max-scenes 2: a clear 503 page, no third process.
            extra = page_a.context.new_page()
            response = extra.goto(url)
            assert response.status == 503 and "All 2 scenes are in use" in extra.content()
            assert len(scene_processes(str(tmp_path))) == 2

            # A clicks again and never saves: stopping the server saves that to a new folder beside OUT.
            box = view_a.bounding_box()  # still in positive mode (the button would toggle it off)
            x, y = box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.5
            page_a.mouse.move(x - 10, y - 10)
            page_a.mouse.move(x, y, steps=3)
            page_a.mouse.click(x, y)
            deadline = time.time() + 90
            while "2 pt" not in segments_text(page_a) and time.time() < deadline:
                time.sleep(0.2)
            assert "2 pt" in segments_text(page_a)
            page_a.locator("#sam-status").filter(has_text="encoder").wait_for(timeout=90000)  # computed
            browser.close()
    finally:
        stop(server)
    deadline = time.time() + 15
    while scene_processes(str(tmp_path)) and time.time() < deadline:
        time.sleep(0.2)
    assert scene_processes(str(tmp_path)) == []  # no scene outlives the server
    recovered = sorted(tmp_path.glob("OUT-unsaved-*/OUT.seg.nrrd"))
    assert len(recovered) == 1, "A's unsaved second click was not saved when its scene stopped"
    assert len(saved_points(recovered[0].parent / "Segment_1.mrk.json")) == 2
    assert output.read_bytes() == saved_a  # the user's own save is untouched
    assert not list(scene2.parent.glob("*unsaved*")) and not list(tmp_path.glob("OUT-scene2-unsaved-*"))
