"""Find labelled cases in evaluation datasets and load their labels in the image's grid.

Two layouts are recognised:

- nnU-Net (v1 or v2): ``ROOT/dataset.json`` with ``labels`` (v2: name -> value, v1: value -> name),
  ``ROOT/imagesTs|imagesTr/<case>_0000.<ext>`` and ``ROOT/labelsTs|labelsTr/<case>.<ext>``. Multi-label files:
  every non-background label is evaluated separately. The test split is used when it has labels.
- SAM-Med3D per-class: ``ROOT/<class>/<dataset>/imagesTr/<name>.<ext>`` with binary
  ``ROOT/<class>/<dataset>/labelsTr/<name>.<ext>`` (label 1, named after the class folder). ``ROOT`` may also be
  a single ``<class>`` folder. Case ids are ``<class>/<dataset>/<name>``.

Extensions: .nii.gz, .nii, .nrrd, .mha, .mhd.
"""
from __future__ import annotations

import json
import os
import warnings
from collections import namedtuple
from typing import Dict, List, Optional

import numpy as np
import SimpleITK as sitk

from ..errors import InputImageError, SamMed3DError

IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")

Case = namedtuple("Case", ["case_id", "image_path", "label_path", "labels"])
Case.__doc__ = "One labelled image: ``labels`` maps each label value to evaluate to its name."


def _split_extension(filename: str):
    for ext in IMAGE_EXTENSIONS:
        if filename.lower().endswith(ext):
            return filename[: -len(ext)], ext
    return None, None


def _image_files(folder: str) -> Dict[str, str]:
    """Stem -> path for the image files directly in ``folder``."""
    files = {}
    for entry in sorted(os.listdir(folder)):
        stem, _ = _split_extension(entry)
        if stem and not entry.startswith(".") and os.path.isfile(os.path.join(folder, entry)):
            files.setdefault(stem, os.path.join(folder, entry))
    return files


# ---------------------------------------------------------------------------------------------------- nnU-Net


def parse_nnunet_labels(labels: dict) -> Dict[int, str]:
    """dataset.json ``labels`` (v2 ``{name: value}`` or v1 ``{"value": name}``) -> ``{value: name}``, no background.

    nnU-Net v2 region labels (a name mapped to a list of values) cannot be evaluated per label and are skipped.
    """
    if not isinstance(labels, dict) or not labels:
        raise SamMed3DError("dataset.json has no 'labels' mapping")
    result = {}
    keys_are_values = all(str(k).strip().lstrip("-").isdigit() for k in labels)
    for key, value in labels.items():
        if keys_are_values:  # v1: "1": "liver"
            number, name = int(str(key).strip()), str(value)
        elif isinstance(value, (list, tuple)):
            if len(value) != 1:
                warnings.warn("dataset.json label %r is a region %r; skipping it" % (key, list(value)))
                continue
            number, name = value[0], str(key)
        else:  # v2: "liver": 1
            number, name = value, str(key)
        try:
            number = int(number)
        except (TypeError, ValueError):
            raise SamMed3DError("dataset.json label %r has a non-integer value %r" % (name, number))
        if number < 0:
            raise SamMed3DError("dataset.json label %r has a negative value %d" % (name, number))
        if number != 0:
            result[number] = name
    if not result:
        raise SamMed3DError("dataset.json defines no foreground label")
    return dict(sorted(result.items()))


def _nnunet_split(root: str, split: Optional[str]) -> str:
    if split is None:
        test_labels = os.path.join(root, "labelsTs")
        if os.path.isdir(os.path.join(root, "imagesTs")) and os.path.isdir(test_labels) and _image_files(test_labels):
            return "Ts"
        return "Tr"
    if split not in ("Tr", "Ts"):
        raise SamMed3DError("split must be 'Tr' or 'Ts', got %r" % (split,))
    return split


def _find_nnunet_cases(root: str, split: Optional[str]) -> List[Case]:
    json_path = os.path.join(root, "dataset.json")
    try:
        with open(json_path, "r", encoding="utf-8") as handle:
            meta = json.load(handle)
    except (OSError, ValueError) as exc:
        raise SamMed3DError("cannot read %s: %s" % (json_path, exc))
    labels = parse_nnunet_labels(meta.get("labels") if isinstance(meta, dict) else None)
    split = _nnunet_split(root, split)
    image_dir, label_dir = os.path.join(root, "images" + split), os.path.join(root, "labels" + split)
    for folder in (image_dir, label_dir):
        if not os.path.isdir(folder):
            raise SamMed3DError("nnU-Net dataset %s has no %s folder" % (root, os.path.basename(folder)))
    label_files = _image_files(label_dir)
    cases = []
    for stem, image_path in sorted(_image_files(image_dir).items()):
        if not stem.endswith("_0000"):
            continue  # other channels (_0001, ...) of multi-modal cases: SAM-Med3D takes one channel
        case_id = stem[: -len("_0000")]
        if case_id not in label_files:
            raise SamMed3DError(
                "case %r has no label file in %s (expected %s.nii.gz or similar)" % (case_id, label_dir, case_id)
            )
        cases.append(Case(case_id, image_path, label_files[case_id], dict(labels)))
    if not cases:
        raise SamMed3DError("no <case>_0000 image found in %s" % image_dir)
    return cases


# ----------------------------------------------------------------------------------------- SAM-Med3D per class


def _find_class_dataset_cases(class_name: str, dataset_dir: str, case_prefix: str) -> List[Case]:
    image_dir, label_dir = os.path.join(dataset_dir, "imagesTr"), os.path.join(dataset_dir, "labelsTr")
    if not os.path.isdir(label_dir):
        raise SamMed3DError("%s has imagesTr but no labelsTr folder" % dataset_dir)
    label_files = _image_files(label_dir)
    cases = []
    for stem, image_path in sorted(_image_files(image_dir).items()):
        if stem not in label_files:
            raise SamMed3DError("image %s has no label file in %s" % (image_path, label_dir))
        cases.append(Case(case_prefix + stem, image_path, label_files[stem], {1: class_name}))
    return cases


def _subdirs(folder: str) -> List[str]:
    return sorted(
        name for name in os.listdir(folder) if not name.startswith(".") and os.path.isdir(os.path.join(folder, name))
    )


def _find_per_class_cases(root: str) -> List[Case]:
    cases = []
    class_dirs = [(os.path.basename(os.path.normpath(root)), root, "")]  # ROOT may be one <class> folder
    class_dirs += [(name, os.path.join(root, name), name + "/") for name in _subdirs(root)]
    for class_name, class_dir, prefix in class_dirs:
        for dataset in _subdirs(class_dir):
            dataset_dir = os.path.join(class_dir, dataset)
            if os.path.isdir(os.path.join(dataset_dir, "imagesTr")):
                cases += _find_class_dataset_cases(class_name, dataset_dir, prefix + dataset + "/")
    return cases


# ------------------------------------------------------------------------------------------------------ public


def find_cases(root: str, split: Optional[str] = None) -> List[Case]:
    """Every labelled case under ``root`` (nnU-Net or SAM-Med3D per-class layout), sorted by case id.

    ``split`` ('Tr' or 'Ts') applies to nnU-Net datasets; by default the test split is used when it has labels.
    Raises :class:`SamMed3DError` for a missing folder, an unrecognised layout or an image without a label file.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise SamMed3DError("dataset folder not found: %s" % root)
    if os.path.isfile(os.path.join(root, "dataset.json")):
        return _find_nnunet_cases(root, split)
    if os.path.isdir(os.path.join(root, "imagesTr")):
        raise SamMed3DError("%s has imagesTr but no dataset.json naming the labels" % root)
    cases = _find_per_class_cases(root)
    if not cases:
        raise SamMed3DError(
            "unrecognised dataset layout in %s: expected dataset.json + imagesTr/labelsTr (nnU-Net) or "
            "<class>/<dataset>/imagesTr + labelsTr (SAM-Med3D)" % root
        )
    return sorted(cases, key=lambda case: case.case_id)


def read_image(path: str) -> sitk.Image:
    """Read a 3D single-component image file, or a DICOM series from a folder."""
    path = os.fspath(path)
    try:
        if os.path.isdir(path):
            reader = sitk.ImageSeriesReader()
            names = reader.GetGDCMSeriesFileNames(path)
            if not names:
                raise InputImageError("no DICOM series in %s" % path)
            reader.SetFileNames(names)
            image = reader.Execute()
        else:
            image = sitk.ReadImage(path)
    except RuntimeError as exc:
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise InputImageError("cannot read image %s: %s" % (path, message))
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputImageError(
            "%s is not a single-component 3D image (dimension %d, %d components)"
            % (path, image.GetDimension(), image.GetNumberOfComponentsPerPixel())
        )
    return image


def same_grid(a: sitk.Image, b: sitk.Image, tolerance: float = 1e-4) -> bool:
    """True when two images share size, spacing, origin and direction (within ``tolerance``, mm or cosine)."""
    if a.GetSize() != b.GetSize():
        return False
    return all(
        np.allclose(x, y, atol=tolerance, rtol=0)
        for x, y in (
            (a.GetSpacing(), b.GetSpacing()),
            (a.GetOrigin(), b.GetOrigin()),
            (a.GetDirection(), b.GetDirection()),
        )
    )


def _as_unsigned_labels(label: sitk.Image, path: str) -> sitk.Image:
    if label.GetPixelID() in (sitk.sitkUInt8, sitk.sitkUInt16, sitk.sitkUInt32):
        return label
    values = sitk.GetArrayViewFromImage(label)
    if values.size and (values.min() < 0 or not np.array_equal(values, np.round(values))):
        raise InputImageError("label file %s holds negative or non-integer values" % path)
    biggest = float(values.max()) if values.size else 0.0
    pixel_type = sitk.sitkUInt8 if biggest < 256 else sitk.sitkUInt16 if biggest < 65536 else sitk.sitkUInt32
    return sitk.Cast(sitk.Round(label) if label.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64) else label,
                     pixel_type)


def load_label_in_image_grid(label_path: str, image: sitk.Image) -> sitk.Image:
    """Read a label map and return it in ``image``'s grid (unsigned integer pixels).

    When the grids differ the labels are resampled by physical position (nearest neighbour, 0 outside), so a
    label file stored with flipped axes or another spacing still lands on the right voxels.
    """
    label_path = os.fspath(label_path)
    if not os.path.isfile(label_path):
        raise SamMed3DError("label file not found: %s" % label_path)
    label = _as_unsigned_labels(read_image(label_path), label_path)
    if same_grid(label, image):
        label = sitk.Image(label)
        label.CopyInformation(image)  # remove sub-tolerance header noise
        return label
    resampled = sitk.Resample(label, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, label.GetPixelID())
    if sitk.GetArrayViewFromImage(label).any() and not sitk.GetArrayViewFromImage(resampled).any():
        raise InputImageError("labels in %s do not overlap the image physically" % label_path)
    return resampled


def labels_present(label_array: np.ndarray, labels: Dict[int, str]) -> Dict[int, str]:
    """The subset of ``labels`` whose value occurs in ``label_array`` (absent labels cannot be clicked on)."""
    present = set(int(v) for v in np.unique(label_array))
    return {value: name for value, name in labels.items() if value in present}
