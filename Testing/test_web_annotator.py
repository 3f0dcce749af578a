"""The web app's annotation core on real MRML (trame-slicer's SlicerApp scene, no browser): segments, clicks through
the Slicer module's logic on the background worker, newest-wins, undo/redo/reset, saving and reloading, uploads."""
import json
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk
import vtk

from sammed3d.errors import SamMed3DError
from sammed3d.markups import read_markups_clicks
from SAMMed3DSlicerLib.interactive_logic import InteractiveSegmentationLogic
from SAMMed3DSlicerLib.segment_io import read_segment_in_volume_grid
from trame_slicer.core import SlicerApp

from sammed3d_web import saving, scene_io
from sammed3d_web.annotator import NEGATIVE, POSITIVE, Annotator

# A voxel inside the pancreas/duodenum region of the bundled 3 mm CT where the demo model segments something.
CLICK_KJI = (15, 60, 60)


@pytest.fixture(scope="module")
def logic():
    logic = InteractiveSegmentationLogic("demo", "cpu", max_rois=1)
    logic.load_model()
    return logic


@pytest.fixture
def annotator(logic, ct_3mm_path):
    app = SlicerApp()
    image = scene_io.read_image_path(ct_3mm_path)
    volume = scene_io.add_volume_node(app.scene, image, "CT")
    segmentation = scene_io.add_segmentation_node(app.scene, volume)
    changes = []
    annotator = Annotator(app.scene, logic, on_change=lambda: changes.append(1))
    annotator.set_data(volume, segmentation)
    annotator.image = image
    annotator.app = app
    return annotator


def voxel_ras(image, kji):
    return image.TransformIndexToPhysicalPoint([int(v) for v in kji[::-1]]) * np.array([-1, -1, 1])


def click(annotator, kji, positive=True):
    node = annotator.prompts()[0 if positive else 1]
    node.AddControlPointWorld(vtk.vtkVector3d(*voxel_ras(annotator.image, kji)))


def settle(annotator):
    annotator.jobs.wait(timeout=60)
    annotator.poll()
    assert not annotator.busy()


def voxels(annotator, segment_id=None):
    mask = read_segment_in_volume_grid(annotator.segmentation_node, segment_id or annotator.segment_id,
                                       annotator.volume_node)
    return 0 if mask is None else int(sitk.GetArrayViewFromImage(mask).sum())


def test_a_click_segments_the_current_segment_on_the_worker(annotator):
    assert annotator.segment_ids() and voxels(annotator) == 0
    click(annotator, CLICK_KJI)
    assert annotator.busy()  # computed off the caller's thread; applied by poll()
    settle(annotator)
    assert voxels(annotator) > 100
    assert len(annotator.clicks()) == 1 and annotator.segments()[0]["clicks"] == 1
    assert "encoder" in annotator.status and "total" in annotator.status  # the last timings


def test_newest_click_wins_and_other_segments_are_untouched(annotator):
    first = annotator.segment_id
    click(annotator, CLICK_KJI)
    settle(annotator)
    first_voxels = voxels(annotator)
    second = annotator.add_segment()
    assert annotator.segment_id == second
    click(annotator, CLICK_KJI)
    click(annotator, (CLICK_KJI[0], CLICK_KJI[1] + 4, CLICK_KJI[2]))  # before the first result arrives
    settle(annotator)
    assert len(annotator.clicks(second)) == 2
    assert voxels(annotator, first) == first_voxels


def test_undo_redo_reset(annotator):
    click(annotator, CLICK_KJI)
    settle(annotator)
    one = voxels(annotator)
    annotator.set_mode(NEGATIVE)
    click(annotator, (CLICK_KJI[0], CLICK_KJI[1], CLICK_KJI[2] + 6), positive=False)
    settle(annotator)
    assert [positive for _, positive in annotator.clicks()] == [True, False]
    assert annotator.can_undo() and not annotator.can_redo()
    assert annotator.undo()
    settle(annotator)
    assert voxels(annotator) == one and annotator.can_redo()
    assert annotator.redo()
    settle(annotator)
    assert len(annotator.clicks()) == 2 and annotator.prompts()[1].GetNumberOfControlPoints() == 1
    annotator.reset()
    assert voxels(annotator) == 0  # (whether a reset is undoable is the controller's decision)
    assert all(node.GetNumberOfControlPoints() == 0 for node in annotator.prompts())


def test_place_mode_follows_the_selected_segment(annotator):
    interaction = annotator.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
    annotator.set_mode(POSITIVE)
    assert interaction.GetCurrentInteractionMode() == interaction.Place
    second = annotator.add_segment()
    selection = annotator.scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    assert selection.GetActivePlaceNodeID() == annotator.prompts(second)[0].GetID()
    assert annotator.mode == POSITIVE
    annotator.set_mode(None)
    assert interaction.GetCurrentInteractionMode() == interaction.ViewTransform


def test_segment_list_operations(annotator):
    first = annotator.segment_id
    second = annotator.add_segment()
    annotator.rename_segment(second, "liver")
    with pytest.raises(SamMed3DError):
        annotator.rename_segment(first, "liver")
    annotator.set_segment_color(second, "#ff0000")
    annotator.set_segment_visible(second, False)
    rows = {row["id"]: row for row in annotator.segments()}
    assert rows[second]["name"] == "liver" and rows[second]["color"] == "#ff0000" and not rows[second]["visible"]
    annotator.delete_segment(second)
    assert annotator.segment_ids() == [first] and annotator.segment_id == first
    annotator.delete_segment(first)
    assert len(annotator.segment_ids()) == 1  # a new empty segment replaces the last one


def test_save_writes_segments_and_points_that_reload_and_replay(annotator, tmp_path):
    click(annotator, CLICK_KJI)
    settle(annotator)
    annotator.set_mode(NEGATIVE)
    click(annotator, (CLICK_KJI[0], CLICK_KJI[1], CLICK_KJI[2] + 6), positive=False)
    settle(annotator)
    annotator.rename_segment(annotator.segment_id, "organ/part")
    saved_voxels = voxels(annotator)
    output = tmp_path / "out.seg.nrrd"
    files = saving.save_annotations(annotator.segmentation_node, annotator.clicks_by_segment_name(), output)
    assert [path.name for path in files] == ["out.seg.nrrd", "organ_part.mrk.json"]
    clicks = read_markups_clicks(files[1])
    expected = annotator.clicks()
    assert [positive for _, positive in clicks] == [positive for _, positive in expected]
    np.testing.assert_allclose([ras for ras, _ in clicks], [ras for ras, _ in expected], atol=1e-4)
    document = json.loads(files[1].read_text())
    assert document["markups"][0]["controlPoints"][1]["description"] == "negative"

    reloaded = scene_io.load_segmentation_file(annotator.scene, output, annotator.volume_node)
    segment_id = reloaded.GetSegmentation().GetSegmentIdBySegmentName("organ/part")
    mask = read_segment_in_volume_grid(reloaded, segment_id, annotator.volume_node)
    assert int(sitk.GetArrayViewFromImage(mask).sum()) == saved_voxels
    # a reloaded segment seeds its session: Reset gives back the loaded content
    annotator.set_data(annotator.volume_node, reloaded)
    annotator.select_segment(segment_id)
    click(annotator, (CLICK_KJI[0], CLICK_KJI[1] + 3, CLICK_KJI[2]))
    settle(annotator)
    annotator.reset()
    assert voxels(annotator) == saved_voxels


def test_a_failed_save_keeps_the_existing_output(annotator, tmp_path, monkeypatch):
    output = tmp_path / "out.seg.nrrd"
    output.write_bytes(b"previous work")
    (tmp_path / "Segment_1.mrk.json").write_text("previous points")
    click(annotator, CLICK_KJI)
    settle(annotator)


    class FailingStorage(object):  # writes half a file, then reports failure (a full disk, a killed process)
        def SetCropToMinimumExtent(self, crop):
            pass

        def SetFileName(self, name):
            self.name = name

        def WriteData(self, node):
            with open(self.name, "wb") as handle:
                handle.write(b"NRRD0004\n# partial")
            return False

    monkeypatch.setattr(saving, "slicer", type("FakeSlicer", (), {"vtkMRMLSegmentationStorageNode": FailingStorage}))
    with pytest.raises(SamMed3DError):
        saving.save_annotations(annotator.segmentation_node, annotator.clicks_by_segment_name(), output)
    assert output.read_bytes() == b"previous work"
    assert (tmp_path / "Segment_1.mrk.json").read_text() == "previous points"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Segment_1.mrk.json", "out.seg.nrrd"]  # no temp files


def test_output_path_must_be_a_seg_nrrd_in_an_existing_folder(tmp_path):
    with pytest.raises(SamMed3DError):
        saving.check_output_path(tmp_path / "out.nii.gz")
    with pytest.raises(SamMed3DError):
        saving.check_output_path(tmp_path / "missing" / "out.seg.nrrd")
    assert saving.safe_file_stem("a/b:c") == "a_b_c"


def test_uploads_a_file_or_a_zipped_dicom_series(tmp_path, ct_3mm_path, shared_data):
    (tmp_path / "one").mkdir()
    single = scene_io.extract_upload([{"name": "../ct.nii.gz", "content": ct_3mm_path.read_bytes()}], tmp_path / "one")
    assert single == tmp_path / "one" / "ct.nii.gz"  # no directory parts from the client
    dicom = shared_data / "ct_abdomen_dicom" / "dicom"
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(str(archive), "w") as handle:
        for path in sorted(p for p in dicom.rglob("*") if p.is_file()):
            handle.write(str(path), "series/" + path.name)
    (tmp_path / "zip").mkdir()
    folder = scene_io.extract_upload([{"name": "series.zip", "content": archive.read_bytes()}], tmp_path / "zip")
    uploaded = scene_io.read_image_path(folder)
    direct = scene_io.read_image_path(dicom)
    assert uploaded.GetSize() == direct.GetSize()
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(uploaded), sitk.GetArrayViewFromImage(direct))


def test_label_image_loads_one_segment_per_label(annotator, tmp_path):
    labels = np.zeros(sitk.GetArrayViewFromImage(annotator.image).shape, np.uint8)
    labels[10:14, 40:50, 40:50] = 3
    labels[20:22, 60:64, 60:64] = 7
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(annotator.image)
    sitk.WriteImage(image, str(tmp_path / "labels.nii.gz"))
    node = scene_io.load_segmentation_file(annotator.scene, tmp_path / "labels.nii.gz", annotator.volume_node)
    names = [node.GetSegmentation().GetNthSegment(i).GetName() for i in range(node.GetSegmentation().GetNumberOfSegments())]
    assert names == ["Segment_3", "Segment_7"]
    counts = [int(sitk.GetArrayFromImage(read_segment_in_volume_grid(
        node, node.GetSegmentation().GetNthSegmentID(i), annotator.volume_node)).sum()) for i in range(2)]
    assert counts == [400, 32]


def test_an_emptied_segment_tells_the_views(annotator):
    """Undo to no click empties the segment; the views must hear of it or they keep showing the old overlay."""
    import slicer

    click(annotator, CLICK_KJI)
    settle(annotator)
    modified = []
    annotator.segmentation_node.GetSegmentation().AddObserver(slicer.vtkSegmentation.SegmentModified,
                                                              lambda caller, event: modified.append(event))
    assert annotator.undo()
    settle(annotator)
    assert voxels(annotator) == 0 and modified
