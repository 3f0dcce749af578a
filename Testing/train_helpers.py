"""A tiny synthetic nnU-Net dataset for the training tests: bright spheres and dark boxes in noise."""
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def make_tiny_dataset(root, cases=2, size=40, spacing=(2.5, 2.5, 3.0), seed=0) -> Path:
    """``root`` as an nnU-Net dataset: ``cases`` images of ``size``^3 voxels with a sphere (1) and a box (2)."""
    root = Path(root)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(seed)
    k, j, i = np.mgrid[:size, :size, :size]
    for n in range(cases):
        image = rng.normal(40, 10, (size,) * 3).astype(np.float32)
        label = np.zeros((size,) * 3, np.uint8)
        c = rng.uniform(size * 0.35, size * 0.65, 3)
        sphere = (k - c[0]) ** 2 + (j - c[1]) ** 2 + (i - c[2]) ** 2 < (size * 0.18) ** 2
        label[sphere] = 1
        image[sphere] += 150
        lo = rng.integers(2, size // 4, 3)
        box = (k >= lo[0]) & (k < lo[0] + 8) & (j >= lo[1]) & (j < lo[1] + 10) & (i >= lo[2]) & (i < lo[2] + 9)
        box &= ~sphere
        label[box] = 2
        image[box] -= 120
        img = sitk.GetImageFromArray(image)
        img.SetSpacing(spacing)
        img.SetOrigin((float(n), -20.0, 5.0))
        lab = sitk.GetImageFromArray(label)
        lab.CopyInformation(img)
        sitk.WriteImage(img, str(root / "imagesTr" / ("case%02d_0000.nii.gz" % n)))
        sitk.WriteImage(lab, str(root / "labelsTr" / ("case%02d.nii.gz" % n)))
    meta = {"labels": {"background": 0, "ball": 1, "box": 2}, "channel_names": {"0": "CT"},
            "numTraining": cases, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root
