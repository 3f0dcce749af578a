#!/usr/bin/env python
"""A real MR with tissue labels for training the demo model: nilearn's bundled MNI152 (ICBM 2009a) T1 template.

Writes an nnU-Net folder with one case: the 1 mm T1-weighted template and a label map made from nilearn's bundled
probability maps: 1 white matter (p > 0.5), 2 grey matter (p > 0.5), 3 CSF (the rest of nilearn's
brain mask: ventricles and sulci). The image is
stored as float32 in RAS (the NIfTI affine of the template). Needs `nilearn` (training extra); no network access
(the template ships inside the nilearn package).

    python scripts/make_mni_data.py OUT_DIR [--copies 1]

``--copies N`` lists the case N times (mni_000 ... ; the same files) so that a sampler that draws objects
uniformly sees it more often next to larger datasets.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import SimpleITK as sitk

LABELS = {"white_matter": 1, "grey_matter": 2, "csf": 3}


def nifti_to_sitk(image, array=None):
    """A nibabel image (or ``array`` on its grid) as a SimpleITK image with the same physical geometry."""
    data = np.asarray(image.get_fdata() if array is None else array)
    affine = image.affine  # RAS
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    direction_ras = affine[:3, :3] / spacing
    flip = np.diag([-1.0, -1.0, 1.0])  # ITK is LPS
    out = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    out.SetSpacing([float(s) for s in spacing])
    out.SetDirection([float(v) for v in (flip @ direction_ras).ravel()])
    out.SetOrigin([float(v) for v in flip @ affine[:3, 3]])
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--copies", type=int, default=1)
    args = parser.parse_args(argv)
    from nilearn import datasets

    template = datasets.load_mni152_template(resolution=1)
    grey = datasets.load_mni152_gm_template(resolution=1).get_fdata()
    white = datasets.load_mni152_wm_template(resolution=1).get_fdata()
    brain = datasets.load_mni152_brain_mask(resolution=1).get_fdata() > 0.5
    label = np.zeros(brain.shape, np.uint8)
    label[brain] = LABELS["csf"]
    label[(grey > 0.5) & (grey >= white)] = LABELS["grey_matter"]
    label[(white > 0.5) & (white > grey)] = LABELS["white_matter"]
    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(args.out, sub), exist_ok=True)
    first = None
    for copy in range(args.copies):
        name = "mni_%03d" % copy
        image_path = os.path.join(args.out, "imagesTr", name + "_0000.nii.gz")
        label_path = os.path.join(args.out, "labelsTr", name + ".nii.gz")
        if first is None:
            sitk.WriteImage(sitk.Cast(nifti_to_sitk(template), sitk.sitkFloat32), image_path, True)
            sitk.WriteImage(nifti_to_sitk(template, label.astype(np.uint8)), label_path, True)
            first = image_path, label_path
        else:
            shutil.copyfile(first[0], image_path)
            shutil.copyfile(first[1], label_path)
    labels = {"background": 0}
    labels.update(LABELS)
    with open(os.path.join(args.out, "dataset.json"), "w") as handle:
        json.dump({"name": "MNI152-ICBM2009a-nilearn", "labels": labels, "channel_names": {"0": "T1"},
                   "numTraining": args.copies, "file_ending": ".nii.gz",
                   "description": "nilearn's bundled MNI152 2009a template with its GM/WM maps and brain mask"},
                  handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
