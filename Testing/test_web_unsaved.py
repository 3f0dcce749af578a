"""Unsaved work survives a stopped scene: the web app saves what changed since the last Save (or load) into a new
folder beside the output, never over a file; a scene process runs that save when the front stops it (stdin closed,
then SIGTERM at once, as `SceneLauncher.stop` does) before it exits."""
import subprocess
import sys
import textwrap
import time

import pytest
import vtk

pytest.importorskip("trame_slicer")

from SAMMed3DSlicerLib.interactive_logic import InteractiveSegmentationLogic  # noqa: E402
from trame.app import get_server  # noqa: E402

from sammed3d_web import scene_io  # noqa: E402
from sammed3d_web.app import WebApp  # noqa: E402

CLICK_KJI = (15, 60, 60)  # inside the bundled 3 mm CT's abdomen, where the demo model segments something


def click(app, image, kji):
    ras = image.TransformIndexToPhysicalPoint([int(v) for v in kji[::-1]])
    app.annotator.prompts()[0].AddControlPointWorld(vtk.vtkVector3d(-ras[0], -ras[1], ras[2]))
    app.annotator.jobs.wait(timeout=60)
    app.annotator.poll()


def test_unsaved_work_goes_to_a_new_folder_and_never_over_the_output(tmp_path, ct_3mm_path):
    logic = InteractiveSegmentationLogic("demo", "cpu", max_rois=1)
    logic.load_model()
    output = tmp_path / "liver.seg.nrrd"
    output.write_bytes(b"an earlier save")
    app = WebApp(logic, output, server=get_server(name="sammed3d-unsaved-test", client_type="vue3"))
    assert app.save_unsaved() is None  # nothing loaded
    image = scene_io.read_image_path(ct_3mm_path)
    app.load(image, None, name="CT")
    assert not app.has_unsaved_work() and app.save_unsaved() is None  # loaded, untouched
    click(app, image, CLICK_KJI)
    assert app.has_unsaved_work()
    saved = app.save_unsaved()
    assert saved.name == output.name and saved.parent.parent == tmp_path
    assert saved.parent.name.startswith("liver-unsaved-")
    assert saved.exists() and (saved.parent / "Segment_1.mrk.json").exists()
    assert output.read_bytes() == b"an earlier save"
    assert app.save_unsaved() is None  # saved once: nothing new
    app.annotator.rename_segment(app.annotator.segment_id, "liver")  # a rename is work too
    second = app.save_unsaved()
    assert second is not None and second.parent != saved.parent
    app.on_save()  # the user's own save
    assert not app.has_unsaved_work() and output.read_bytes() != b"an earlier save"


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sammed3d_web.scenes import exit_with_parent

    def save():
        time.sleep(0.5)  # a save that takes a while: SIGTERM must not cut it short
        Path(sys.argv[1]).write_text("saved")

    exit_with_parent(before_exit=save)
    print("ready", flush=True)
    time.sleep(60)
""")


def test_a_stopped_scene_process_runs_its_save_before_exiting(tmp_path):
    marker = tmp_path / "saved.txt"
    process = subprocess.Popen([sys.executable, "-c", CHILD, str(marker)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    process.stdin.close()  # what SceneLauncher.stop does: close the pipe, then SIGTERM at once
    process.terminate()
    assert process.wait(timeout=20) == 0
    assert marker.read_text() == "saved"
