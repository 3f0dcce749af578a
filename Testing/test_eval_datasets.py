"""Dataset discovery (nnU-Net v1/v2, SAM-Med3D per-class) and physical label resampling."""
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from sammed3d.errors import InputImageError, SamMed3DError
from sammed3d.evaluation.datasets import (
    find_cases,
    labels_present,
    load_label_in_image_grid,
    parse_nnunet_labels,
    read_image,
    same_grid,
)


def write_volume(path, array, spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0), direction=None):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    image = sitk.GetImageFromArray(np.asarray(array))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return image


def make_nnunet(root, labels, cases=("case_a", "case_b"), split="Tr", ext=".nii.gz"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps({"labels": labels, "file_ending": ext}))
    for case in cases:
        write_volume(root / ("images" + split) / (case + "_0000" + ext), np.zeros((4, 5, 6), np.int16))
        write_volume(root / ("labels" + split) / (case + ext), np.zeros((4, 5, 6), np.uint8))
    return root


def test_nnunet_v2_dataset(tmp_path):
    root = make_nnunet(tmp_path / "Dataset001", {"background": 0, "liver": 1, "spleen": 2})
    write_volume(root / "imagesTr" / "case_a_0001.nii.gz", np.zeros((4, 5, 6), np.int16))  # second channel
    cases = find_cases(root)
    assert [c.case_id for c in cases] == ["case_a", "case_b"]
    assert cases[0].labels == {1: "liver", 2: "spleen"}
    assert cases[0].image_path == str(root / "imagesTr" / "case_a_0000.nii.gz")
    assert cases[1].label_path == str(root / "labelsTr" / "case_b.nii.gz")


def test_nnunet_v1_labels_and_other_extensions(tmp_path):
    root = make_nnunet(tmp_path / "Task02", {"0": "background", "1": "left atrium"}, ext=".nrrd")
    cases = find_cases(root)
    assert [c.case_id for c in cases] == ["case_a", "case_b"]
    assert cases[0].labels == {1: "left atrium"}
    assert cases[0].image_path.endswith("case_a_0000.nrrd")


def test_parse_nnunet_labels_variants():
    assert parse_nnunet_labels({"background": 0, "b": 2, "a": 1}) == {1: "a", 2: "b"}
    assert parse_nnunet_labels({"0": "background", "3": "tumour"}) == {3: "tumour"}
    with pytest.warns(UserWarning, match="region"):
        assert parse_nnunet_labels({"background": 0, "edema": 1, "whole": [1, 2, 3]}) == {1: "edema"}
    for bad in ({}, {"background": 0}, {"liver": "x"}, None):
        with pytest.raises(SamMed3DError):
            parse_nnunet_labels(bad)


def test_nnunet_prefers_labelled_test_split(tmp_path):
    root = make_nnunet(tmp_path / "Dataset002", {"background": 0, "liver": 1}, cases=("tr1",))
    (root / "imagesTs").mkdir()
    (root / "labelsTs").mkdir()
    write_volume(root / "imagesTs" / "ts1_0000.nii.gz", np.zeros((4, 5, 6), np.int16))
    assert [c.case_id for c in find_cases(root)] == ["tr1"]  # labelsTs empty: the training split is used
    write_volume(root / "labelsTs" / "ts1.nii.gz", np.zeros((4, 5, 6), np.uint8))
    assert [c.case_id for c in find_cases(root)] == ["ts1"]
    assert [c.case_id for c in find_cases(root, split="Tr")] == ["tr1"]
    with pytest.raises(SamMed3DError, match="split"):
        find_cases(root, split="Val")


def test_nnunet_missing_label_file(tmp_path):
    root = make_nnunet(tmp_path / "Dataset003", {"background": 0, "liver": 1})
    os.remove(str(root / "labelsTr" / "case_b.nii.gz"))
    with pytest.raises(SamMed3DError, match="case_b"):
        find_cases(root)


def test_sammed3d_per_class_layout(tmp_path):
    for cls, dataset, names in (("liver", "ct_lits", ["a", "b"]), ("kidney", "ct_kits", ["a"])):
        for name in names:
            write_volume(tmp_path / cls / dataset / "imagesTr" / (name + ".nii.gz"), np.zeros((3, 3, 3), np.int16))
            write_volume(tmp_path / cls / dataset / "labelsTr" / (name + ".nii.gz"), np.zeros((3, 3, 3), np.uint8))
    cases = find_cases(tmp_path)
    assert [c.case_id for c in cases] == ["kidney/ct_kits/a", "liver/ct_lits/a", "liver/ct_lits/b"]
    assert [c.labels for c in cases] == [{1: "kidney"}, {1: "liver"}, {1: "liver"}]
    # a single <class> folder works too
    single = find_cases(tmp_path / "liver")
    assert [(c.case_id, c.labels) for c in single] == [("ct_lits/a", {1: "liver"}), ("ct_lits/b", {1: "liver"})]
    os.remove(str(tmp_path / "liver" / "ct_lits" / "labelsTr" / "b.nii.gz"))
    with pytest.raises(SamMed3DError, match="b.nii.gz"):
        find_cases(tmp_path)


def test_unrecognised_layouts(tmp_path):
    with pytest.raises(SamMed3DError, match="not found"):
        find_cases(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SamMed3DError, match="unrecognised dataset layout"):
        find_cases(tmp_path / "empty")
    write_volume(tmp_path / "nojson" / "imagesTr" / "x_0000.nii.gz", np.zeros((2, 2, 2), np.int16))
    with pytest.raises(SamMed3DError, match="dataset.json"):
        find_cases(tmp_path / "nojson")
    (tmp_path / "badjson").mkdir()
    (tmp_path / "badjson" / "dataset.json").write_text("{not json")
    with pytest.raises(SamMed3DError, match="dataset.json"):
        find_cases(tmp_path / "badjson")


def test_labels_on_the_same_grid_are_returned_as_is(tmp_path):
    labels = np.random.default_rng(0).integers(0, 4, size=(4, 5, 6)).astype(np.uint8)
    image = write_volume(tmp_path / "img.nii.gz", np.zeros((4, 5, 6), np.int16), origin=(1, 2, 3))
    write_volume(tmp_path / "lab.nii.gz", labels, origin=(1, 2, 3))
    result = load_label_in_image_grid(str(tmp_path / "lab.nii.gz"), image)
    assert same_grid(result, image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result), labels)


def test_flipped_and_coarser_label_grids_are_matched_physically(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=(4, 5, 6)).astype(np.uint8)
    image = write_volume(tmp_path / "img.nii.gz", np.zeros((4, 5, 6), np.int16), spacing=(1, 1, 2))
    # same voxels stored with the y axis reversed (as the shared DICOM case's labels are)
    flipped_origin = image.TransformIndexToPhysicalPoint((0, 4, 0))
    write_volume(tmp_path / "flip.nii.gz", labels[:, ::-1, :], spacing=(1, 1, 2), origin=flipped_origin,
                 direction=(1, 0, 0, 0, -1, 0, 0, 0, 1))
    result = load_label_in_image_grid(str(tmp_path / "flip.nii.gz"), image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result), labels)
    # labels at half the resolution in x: each label voxel covers two image voxels (centres at +-0.5 mm)
    coarse = rng.integers(0, 3, size=(4, 5, 3)).astype(np.uint8)
    write_volume(tmp_path / "coarse.nii.gz", coarse, spacing=(2, 1, 2), origin=(0.5, 0, 0))
    result = load_label_in_image_grid(str(tmp_path / "coarse.nii.gz"), image)
    expected = np.repeat(coarse, 2, axis=2)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result), expected)


def test_label_loading_errors_and_types(tmp_path):
    image = write_volume(tmp_path / "img.nii.gz", np.zeros((4, 5, 6), np.int16))
    with pytest.raises(SamMed3DError, match="not found"):
        load_label_in_image_grid(str(tmp_path / "nope.nii.gz"), image)
    far = np.ones((4, 5, 6), np.uint8)
    write_volume(tmp_path / "far.nii.gz", far, origin=(500.0, 0.0, 0.0))
    with pytest.raises(InputImageError, match="overlap"):
        load_label_in_image_grid(str(tmp_path / "far.nii.gz"), image)
    write_volume(tmp_path / "neg.nii.gz", -np.ones((4, 5, 6), np.int16))
    with pytest.raises(InputImageError, match="negative"):
        load_label_in_image_grid(str(tmp_path / "neg.nii.gz"), image)
    floats = np.full((4, 5, 6), 2.0, np.float32)
    floats[0] = 300.0
    write_volume(tmp_path / "float.nii.gz", floats)
    result = load_label_in_image_grid(str(tmp_path / "float.nii.gz"), image)
    assert result.GetPixelID() == sitk.sitkUInt16
    assert set(np.unique(sitk.GetArrayFromImage(result))) == {2, 300}


def test_read_image_errors(tmp_path):
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image")
    with pytest.raises(InputImageError, match="junk"):
        read_image(str(tmp_path / "junk.nii.gz"))
    sitk.WriteImage(sitk.Image(4, 4, sitk.sitkUInt8), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(InputImageError, match="3D"):
        read_image(str(tmp_path / "flat.nii.gz"))
    (tmp_path / "nodicom").mkdir()
    with pytest.raises(InputImageError, match="DICOM"):
        read_image(str(tmp_path / "nodicom"))


def test_labels_present():
    array = np.array([[[0, 1], [5, 5]]], np.uint8)
    assert labels_present(array, {1: "a", 2: "b", 5: "c"}) == {1: "a", 5: "c"}


def test_shared_dicom_case_labels_are_aligned_physically(shared_data):
    case = shared_data / "ct_abdomen_dicom"
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(case / "dicom")))
    image = reader.Execute()
    names = {int(k): v for k, v in json.loads((case / "labels.json").read_text()).items()}
    result = load_label_in_image_grid(str(case / "labels.nii.gz"), image)
    assert same_grid(result, image)
    stored = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "labels.nii.gz")))
    aligned = sitk.GetArrayFromImage(result)
    np.testing.assert_array_equal(aligned, stored[:, ::-1, :])  # the y flip is undone
    assert labels_present(aligned, names) == names
    hu = sitk.GetArrayFromImage(image)
    liver = [v for v, n in names.items() if n == "liver"][0]
    assert 30 < hu[aligned == liver].mean() < 200  # soft tissue where the liver label lands
    assert hu[stored == liver].mean() < 0  # reading the array as-is puts it elsewhere
    # read_image reads the same series from the folder
    assert same_grid(read_image(str(case / "dicom")), image)
