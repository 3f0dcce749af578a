"""`sammed3d segment` with bad outputs and bad markups: refused before any work, in at most 3 lines, nothing lost.

Every case checks: exit status != 0, at most 3 lines on stderr, no traceback, no temporary file name, and every
file the user had (image, DICOM files, markups file, an existing output) byte for byte unchanged.
"""
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from sammed3d.cli import main
from sammed3d.image_io import write_image_atomic
from sammed3d.errors import SamMed3DError

CLICK = ["--point", "65", "185.3", "151.3"]  # inside the bundled CT (liver)
SENTINEL = b"an existing output that must survive"


def digest(folder):
    """sha256 of every file under folder (symlinks as their target text), to prove nothing changed."""
    result = {}
    for root, _, files in os.walk(str(folder)):
        for name in files:
            path = os.path.join(root, name)
            if os.path.islink(path):
                result[path] = "link:" + os.readlink(path)
            else:
                with open(path, "rb") as handle:
                    result[path] = hashlib.sha256(handle.read()).hexdigest()
    return result


def markups(path, points, kind="Fiducial", system="LPS"):
    path.write_text(json.dumps({"markups": [{"type": kind, "coordinateSystem": system, "controlPoints": points}]}))
    return path


@pytest.fixture()
def user_files(tmp_path, ct_3mm_path):
    """A user's folder: the CT, an existing mask, a markups file; the model must never be needed."""
    folder = tmp_path / "user"
    folder.mkdir()
    shutil.copy(str(ct_3mm_path), str(folder / "ct.nii.gz"))
    (folder / "mask.nii.gz").write_bytes(SENTINEL)
    markups(folder / "clicks.mrk.json", [{"label": "F-1", "position": [-65.0, -185.3, 151.3]}])
    return folder


def run_failing(argv, capsys, folder):
    """Run the command; assert the common must-shows; return stderr."""
    before = digest(folder)
    code = main(argv + ["--checkpoint", "/nonexistent/never-loaded.pth"])
    captured = capsys.readouterr()
    text = captured.err + captured.out
    lines = captured.err.strip().splitlines()
    assert code != 0, text
    assert 1 <= len(lines) <= 3, text
    assert "Traceback" not in text and ".tmp" not in text and "never-loaded" not in text, text
    assert digest(folder) == before
    return captured.err


def test_output_that_is_the_input_image_is_refused(user_files, capsys, monkeypatch):
    monkeypatch.chdir(user_files)
    ct = str(user_files / "ct.nii.gz")
    err = run_failing(["segment", ct, "-o", ct] + CLICK, capsys, user_files)
    assert "is an input file" in err and ct in err
    # the same file through a relative path with '..', and through a symlink
    (user_files / "sub").mkdir()
    err = run_failing(["segment", "ct.nii.gz", "-o", "sub/../ct.nii.gz"] + CLICK, capsys, user_files)
    assert "sub/../ct.nii.gz" in err
    os.symlink(ct, str(user_files / "link.nii.gz"))
    run_failing(["segment", "ct.nii.gz", "-o", "link.nii.gz"] + CLICK, capsys, user_files)
    os.link(ct, str(user_files / "hard.nii.gz"))  # a hard link is the same file too
    run_failing(["segment", "ct.nii.gz", "-o", "hard.nii.gz"] + CLICK, capsys, user_files)


def test_overlay_that_is_the_input_image_is_refused(user_files, capsys):
    os.symlink(str(user_files / "ct.nii.gz"), str(user_files / "look.png"))
    err = run_failing(["segment", str(user_files / "ct.nii.gz"), "-o", str(user_files / "new.nii.gz"),
                       "--overlay", str(user_files / "look.png")] + CLICK, capsys, user_files)
    assert "--overlay" in err


def test_output_that_is_the_points_file_is_refused(user_files, capsys):
    points = markups(user_files / "clicks.nrrd", [{"label": "F-1", "position": [-65.0, -185.3, 151.3]}])
    err = run_failing(["segment", str(user_files / "ct.nii.gz"), "-o", str(points), "--points", str(points)],
                      capsys, user_files)
    assert "is an input file" in err


def test_output_that_is_a_file_of_the_input_dicom_folder_is_refused(shared_data, tmp_path, capsys):
    folder = tmp_path / "dicom"
    shutil.copytree(str(shared_data / "ct_abdomen_dicom" / "dicom"), str(folder))
    first = sorted(folder.iterdir())[0]
    os.symlink(str(first), str(tmp_path / "mask.nii.gz"))
    err = run_failing(["segment", str(folder), "-o", str(tmp_path / "mask.nii.gz")] + CLICK, capsys, tmp_path)
    assert "a file of an input folder" in err
    err = run_failing(["segment", str(folder), "-o", str(tmp_path / "m.nii.gz"), "--save-roi", str(folder / "roi")]
                      + CLICK, capsys, tmp_path)
    assert "inside the input folder" in err


@pytest.mark.parametrize("case", ["missing_folder", "folder_is_a_file", "output_is_a_folder", "bad_suffix",
                                  "overlay_suffix", "save_roi_is_a_file"])
def test_unusable_output_paths_are_refused_before_any_work(case, user_files, capsys):
    ct = str(user_files / "ct.nii.gz")
    output = {"missing_folder": "nope/mask.nii.gz", "folder_is_a_file": "mask.nii.gz/inner.nii.gz",
              "output_is_a_folder": "dir.nii.gz", "bad_suffix": "mask.png"}.get(case, "new.nii.gz")
    (user_files / "dir.nii.gz").mkdir()
    extra = {"overlay_suffix": ["--overlay", str(user_files / "look.jpg")],
             "save_roi_is_a_file": ["--save-roi", str(user_files / "mask.nii.gz")]}.get(case, [])
    err = run_failing(["segment", ct, "-o", str(user_files / output)] + extra + CLICK, capsys, user_files)
    assert str(user_files) in err  # the user's own path, as typed


def test_read_only_folder_is_refused_before_any_work(user_files, capsys):
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    if root:  # root writes into chmod-ed folders; /proc refuses new files even to root
        if not os.path.isdir("/proc/self"):
            pytest.skip("running as root without /proc: no unwritable folder to try")
        locked = "/proc"
    else:
        locked = str(user_files / "locked")
        os.mkdir(locked)
        os.chmod(locked, 0o500)
    try:
        err = run_failing(["segment", str(user_files / "ct.nii.gz"), "-o", os.path.join(locked, "m.nii.gz")] + CLICK,
                          capsys, user_files)
        assert "not writable" in err and os.path.join(locked, "m.nii.gz") in err
    finally:
        if not root:
            os.chmod(locked, 0o700)


def test_write_errors_name_the_users_path_not_the_temporary_file(tmp_path, monkeypatch):
    def failing_write(image, name, *args):
        raise RuntimeError("ITK ERROR: ImageFileWriter(0x1): Could not create IO object for writing file %s" % name)

    monkeypatch.setattr(sitk, "WriteImage", failing_write)
    target = tmp_path / "mask.nii.gz"
    with pytest.raises(SamMed3DError) as info:
        write_image_atomic(sitk.Image([4, 4, 4], sitk.sitkUInt8), target)
    assert str(target) in str(info.value) and ".tmp" not in str(info.value)
    assert os.listdir(str(tmp_path)) == []


BAD_MARKUPS = {
    "two_coordinates": ([{"label": "F-1", "position": [1.0, 2.0]}], "Fiducial", "not 3 numbers"),
    "text_coordinates": ([{"label": "F-1", "position": ["1", "2", "3"]}], "Fiducial", "other than numbers"),
    "null_coordinate": ([{"label": "F-1", "position": [1.0, None, 3.0]}], "Fiducial", "other than numbers"),
    "point_not_object": ([[1.0, 2.0, 3.0]], "Fiducial", "not a JSON object"),
    "number_label": ([{"label": 7, "position": [1.0, 2.0, 3.0]}], "Fiducial", "label 7 is not text"),
    "selected_text": ([{"label": "F-1", "position": [1, 2, 3], "selected": "no"}], "Fiducial", "not true/false"),
    "closed_curve": ([{"label": "C-1", "position": [1, 2, 3]}], "ClosedCurve", "has type ClosedCurve"),
    "roi": ([{"label": "R", "position": [1, 2, 3]}], "ROI", "has type ROI"),
    "all_unselected": ([{"label": "F-1", "position": [-65.0, -185.3, 151.3], "selected": False},
                        {"label": "F-2", "position": [-60.0, -185.3, 151.3], "selected": False},
                        {"label": "F-3", "positionStatus": "undefined"}], "Fiducial", "skipped"),
}


@pytest.mark.parametrize("case", sorted(BAD_MARKUPS))
def test_bad_markups_files_fail_in_one_line(case, user_files, capsys):
    points, kind, expected = BAD_MARKUPS[case]
    path = markups(user_files / "bad.mrk.json", points, kind)
    err = run_failing(["segment", str(user_files / "ct.nii.gz"), "-o", str(user_files / "new.nii.gz"),
                       "--points", str(path)], capsys, user_files)
    assert expected in err and str(path) in err or path.name in err, err
    if case == "all_unselected":
        assert "2 unselected" in err and "1 without a position" in err


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"markups": 3}', '{"markups": [{"type": "Fiducial", '
                                  '"coordinateSystem": "XYZ", "controlPoints": []}]}'])
def test_malformed_markups_documents_fail_in_one_line(text, user_files, capsys):
    path = user_files / "bad.mrk.json"
    path.write_text(text)
    run_failing(["segment", str(user_files / "ct.nii.gz"), "-o", str(user_files / "new.nii.gz"), "--points",
                 str(path)], capsys, user_files)


def test_markups_counts_skipped_points(tmp_path):
    from sammed3d.markups import read_markups

    path = markups(tmp_path / "p.mrk.json", [
        {"label": "F-1", "position": [1, 2, 3]},
        {"label": "F-2", "position": [4, 5, 6], "selected": False},
        {"label": "F-3", "position": [0, 0, 0], "positionStatus": "undefined"},
        {"label": "F-4"},
    ])
    result = read_markups(path)
    assert result.clicks == [((-1.0, -2.0, 3.0), True)]
    assert (result.unselected, result.undefined) == (1, 2)
    assert result.skipped_text() == "1 unselected, 2 without a position"


def test_nan_voxels_are_reported(tmp_path, capsys):
    """Decision: NaN/inf voxels are segmented as 0 (as the model's padding) with a one-line warning."""
    from sammed3d.cli.checks import warn_about_nonfinite_voxels

    array = np.full((20, 20, 20), 40.0, dtype=np.float32)
    array[0, :5, :] = np.nan
    array[1, 0, 0] = np.inf
    image = sitk.GetImageFromArray(array)
    assert warn_about_nonfinite_voxels(image, "img.nii.gz") == 101
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "img.nii.gz has 101 NaN/infinite voxel(s)" in err and "treated as 0" in err
    assert warn_about_nonfinite_voxels(sitk.Cast(sitk.GetImageFromArray(np.ones((4, 4, 4))), sitk.sitkInt16), "x") == 0


def nan_image(path):
    array = np.full((24, 24, 24), 40.0, dtype=np.float32)
    array[::3] = np.nan  # 8 of 24 slices
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((2.0, 2.0, 2.0))
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize("name", ["nan.nii.gz", "nan.nii", "nan.nrrd", "nan.mha"])
def test_nan_voxels_are_counted_in_every_format(name, tmp_path):
    """ITK reads NaN in NIfTI files as 0 without a word: they are counted in the file itself."""
    from sammed3d.image_io import count_nonfinite_voxels, read_image

    path = nan_image(tmp_path / name)
    assert count_nonfinite_voxels(read_image(path), path) == 8 * 24 * 24


def test_segment_reports_nan_voxels_of_a_nifti_file(tmp_path):
    import subprocess
    import sys

    path = nan_image(tmp_path / "nan.nii.gz")
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "SAMMed3DSlicer"))
    result = subprocess.run([sys.executable, "-m", "sammed3d", "segment", str(path), "-o", str(tmp_path / "m.nii.gz"),
                             "--point", "-20", "-20", "20", "--checkpoint", "demo", "--device", "cpu"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "has 4608 NaN/infinite voxel(s)" in result.stderr and "treated as 0" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_are_one_line_with_a_help_hint(capsys):
    with pytest.raises(SystemExit) as info:
        main(["segment", "image.nii.gz", "--point", "1", "2"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.count("\n") == 1 and "expected 3 arguments" in err and "sammed3d segment --help" in err


def test_os_errors_during_a_run_are_one_line_without_temporary_names(user_files, capsys, monkeypatch):
    """E.g. the disk fills while the mask is written: one line, no traceback, no temporary file name."""
    import sammed3d.cli.segment as segment

    def full_disk(args):
        raise OSError(28, "No space left on device", str(user_files / ".new.nii.gz.abc123.tmp.nii.gz"))

    monkeypatch.setattr(segment, "run", full_disk)
    code = main(["segment", str(user_files / "ct.nii.gz"), "-o", str(user_files / "new.nii.gz")] + CLICK)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err and ".tmp" not in err
