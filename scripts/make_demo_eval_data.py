#!/usr/bin/env python
"""Evaluation sets for the demo model: the shared DICOM CT and MR-like PROXIES derived from it (held out), and
MR-like proxies of the 3 mm abdominal CT with kidneys (a TRAINING case).

    python scripts/make_demo_eval_data.py OUT_DIR [--shared ../shared/data] [--seed 0]

Writes four held-out nnU-Net folders (imagesTs/labelsTs, labels liver and spleen; this case has no kidneys):

* OUT_DIR/ct: `ct_abdomen_dicom` as NIfTI (the demo model since this round never trains on it).
* OUT_DIR/mr_proxy_t1, OUT_DIR/mr_proxy_t2, OUT_DIR/mr_proxy_t1fs_ce: the same CT with every tissue given a
  T1-, T2- or fat-suppressed contrast-enhanced T1-weighted-like brightness (air, lung, fat, fluid, soft tissue, bone and marrow by HU thresholds; liver, spleen, kidneys,
  pancreas, stomach, vessels by their labels), keeping a little of the CT texture, then a smooth bias field,
  blur and Rician noise, in positive arbitrary units. This is a PROXY, not MR: the tissue boundaries come from a
  CT (and from its labels), real MR has other artefacts, resolution and anatomy. Seeded, numpy + SimpleITK only.

and three more, OUT_DIR/train3mm_mr_proxy_{t1,t2,t1fs_ce}: the same proxies of `ct_abdomen_3mm`, labels liver,
spleen and both kidneys. The demo model trains on that CT (not on these contrasts), so their scores flatter it; they
are here because the held-out case has no kidneys, and because they tracked the reported real-MR scores of an
earlier demo model: 0.33 / 0.50 at 1 / 10 clicks on real MR (issue 13), 0.34 / 0.53 on these
(`scripts/eval_demo.py CHECKPOINT OUT_DIR --seeds 0 1 2 3 4 5 6 7`, their mean).
"""
import argparse
import json
import os
import sys

import numpy as np
import SimpleITK as sitk

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "SAMMed3DSlicer"))

from sammed3d.evaluation.datasets import load_label_in_image_grid, read_image  # noqa: E402

CASE = "ct_abdomen_dicom"
EVAL_LABELS = {"spleen": 1, "liver": 5}
TRAINING_CASE = "ct_abdomen_3mm"
TRAINING_CASE_LABELS = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "liver": 5}
# brightness (0..1) per tissue: (T1-like, T2-like, fat-suppressed contrast-enhanced T1-like); typical relative
# MR signal of abdominal tissues
WEIGHTINGS = ("t1", "t2", "t1fs_ce")
TISSUES = {
    "air": (0.02, 0.02, 0.02), "fat": (0.95, 0.55, 0.1), "fluid": (0.12, 1.0, 0.08), "soft": (0.38, 0.3, 0.3),
    "bone": (0.05, 0.05, 0.05), "marrow": (0.7, 0.35, 0.25),
    "liver": (0.6, 0.22, 0.5), "spleen": (0.42, 0.62, 0.58), "kidney": (0.45, 0.7, 0.75),
    "pancreas": (0.68, 0.4, 0.55), "stomach": (0.3, 0.45, 0.35), "vessel": (0.2, 0.08, 0.95),
}
ORGAN_LABELS = {"liver": ["liver"], "spleen": ["spleen"], "kidney": ["kidney_right", "kidney_left"],
                "pancreas": ["pancreas"], "stomach": ["stomach", "duodenum", "small_bowel", "colon"],
                "vessel": ["aorta", "inferior_vena_cava", "portal_vein_and_splenic_vein"]}


def tissue_image(hu, labels, names, weighting, rng):
    """MR-like intensities (float32, > 0) from CT HU, the label map and its label names."""
    column = WEIGHTINGS.index(weighting)
    classes = {
        "air": hu < -500, "fat": (hu >= -500) & (hu < -30), "fluid": (hu >= -30) & (hu < 20),
        "soft": (hu >= 20) & (hu < 180), "marrow": (hu >= 180) & (hu < 400), "bone": hu >= 400,
    }
    by_name = {name: value for value, name in names.items()}
    for tissue, organ_names in ORGAN_LABELS.items():
        mask = np.zeros(hu.shape, bool)
        for name in organ_names:
            if name in by_name:
                mask |= labels == by_name[name]
        if mask.any():
            classes = {k: v & ~mask for k, v in classes.items()}
            classes[tissue] = mask
    out = np.zeros(hu.shape, np.float32)
    for tissue, mask in classes.items():
        if not mask.any():
            continue
        texture = (hu[mask] - np.median(hu[mask])) / 200.0  # a little of the CT texture
        out[mask] = TISSUES[tissue][column] * (1.0 + np.clip(texture, -0.3, 0.3))
    return out


def mr_proxy(image, labels, names, weighting, rng):
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    out = sitk.GetImageFromArray(tissue_image(hu, labels, names, weighting, rng))
    out.CopyInformation(image)
    out = sitk.SmoothingRecursiveGaussian(out, [0.8 * s for s in image.GetSpacing()])  # partial volume
    array = sitk.GetArrayFromImage(out)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, n) for n in array.shape], indexing="ij")
    a = rng.uniform(-0.25, 0.25, 4)
    array = array * np.exp(a[0] * xx + a[1] * yy + a[2] * zz + a[3] * xx * yy).astype(np.float32)  # bias field
    sigma = 0.03 * float(np.percentile(array, 99))
    array = np.hypot(array + sigma * rng.standard_normal(array.shape), sigma * rng.standard_normal(array.shape))
    result = sitk.GetImageFromArray((array * 1000.0).astype(np.float32))
    result.CopyInformation(image)
    return result


def write_dataset(folder, image, label, case=CASE, eval_labels=None):
    for sub in ("imagesTs", "labelsTs"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    sitk.WriteImage(image, os.path.join(folder, "imagesTs", case + "_0000.nii.gz"), True)
    sitk.WriteImage(label, os.path.join(folder, "labelsTs", case + ".nii.gz"), True)
    labels = {"background": 0}
    labels.update(EVAL_LABELS if eval_labels is None else eval_labels)
    with open(os.path.join(folder, "dataset.json"), "w") as handle:
        json.dump({"labels": labels, "channel_names": {"0": "CT or MR proxy"}, "file_ending": ".nii.gz",
                   "numTraining": 0}, handle, indent=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared", "data"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    folder = os.path.join(args.shared, CASE)
    image = read_image(os.path.join(folder, "dicom"))
    label = load_label_in_image_grid(os.path.join(folder, "labels.nii.gz"), image)
    with open(os.path.join(folder, "labels.json")) as handle:
        names = {int(k): v for k, v in json.load(handle).items()}
    labels = sitk.GetArrayFromImage(label)
    kept = np.where(np.isin(labels, list(EVAL_LABELS.values())), labels, 0).astype(np.uint8)
    eval_label = sitk.GetImageFromArray(kept)
    eval_label.CopyInformation(image)
    write_dataset(os.path.join(args.out, "ct"), sitk.Cast(image, sitk.sitkInt16), eval_label)
    for index, weighting in enumerate(WEIGHTINGS):
        rng = np.random.default_rng([args.seed, index])
        write_dataset(os.path.join(args.out, "mr_proxy_" + weighting), mr_proxy(image, labels, names, weighting, rng),
                      eval_label)
    write_training_case_proxies(args.shared, args.out)
    return 0


def write_training_case_proxies(shared, out):
    """OUT/train3mm_mr_proxy_*: MR-like proxies of the 3 mm training CT, liver, spleen and kidneys (seeds 7, i)."""
    folder = os.path.join(shared, TRAINING_CASE)
    image = read_image(os.path.join(folder, "image.nii.gz"))
    label = load_label_in_image_grid(os.path.join(folder, "labels.nii.gz"), image)
    with open(os.path.join(folder, "labels.json")) as handle:
        names = {int(k): v for k, v in json.load(handle).items()}
    labels = sitk.GetArrayFromImage(label)
    kept = sitk.GetImageFromArray(np.where(np.isin(labels, list(TRAINING_CASE_LABELS.values())), labels, 0)
                                  .astype(np.uint8))
    kept.CopyInformation(image)
    for index, weighting in enumerate(WEIGHTINGS):
        proxy = mr_proxy(image, labels, names, weighting, np.random.default_rng([7, index]))
        write_dataset(os.path.join(out, "train3mm_mr_proxy_" + weighting), proxy, kept, TRAINING_CASE,
                      TRAINING_CASE_LABELS)


if __name__ == "__main__":
    sys.exit(main())
