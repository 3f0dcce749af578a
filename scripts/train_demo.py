#!/usr/bin/env python
"""Reproduce the bundled demo model: the shared CTs + nilearn's MNI152 MR + synthetic data -> `sammed3d train`.

    python scripts/train_demo.py WORK_DIR [--steps 2000] [--cases 20] [--shared ../shared/data]
           [--init PATH|none] [--organ-copies 16] [--threads 1] [-- extra sammed3d train options]

1. WORK_DIR/synthetic: scripts/make_demo_data.py --cases N --seed 1 (skipped when present).
2. WORK_DIR/shared_ct: the shared CTs as an nnU-Net dataset (labels resampled into the image grid by physical
   position), ct_abdomen_3mm listed 4 times (the only training case with liver, spleen and kidneys);
   WORK_DIR/organs: ct_abdomen_3mm with only its large abdominal organs labelled, listed --organ-copies times.
   ct_abdomen_dicom is HELD OUT (the honest CT score and the MR-like proxy of scripts/eval_demo.py).
3. WORK_DIR/mni: scripts/make_mni_data.py (nilearn's MNI152 T1 with white/grey matter and CSF; skipped when
   nilearn is missing).
4. `sammed3d train` (tiny config) fine-tuned from --init (default: a copy of the bundled demo model taken at the
   first run, WORK_DIR/init.safetensors) with the contrast augmentation (`--contrast-aug`) into WORK_DIR/run
   (resumable: re-running continues it).
5. WORK_DIR/sam_med3d_demo.safetensors (the weights; copy to SAMMed3DSlicer/sammed3d/data/).
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "SAMMed3DSlicer"))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from sammed3d.evaluation.datasets import load_label_in_image_grid, read_image  # noqa: E402

import shutil  # noqa: E402

# case folder -> (image name, times listed in the dataset)
CASES = {"ct_abdomen_3mm": ("image.nii.gz", 4), "ct_chest_1.5mm": ("image.nii.gz", 1),
         "ct_aorta_1.5mm": ("image.nii.gz", 1), "ct_trunk_3mm": ("image.nii.gz", 1)}
HELD_OUT_CASE = "ct_abdomen_dicom"
# The large abdominal organs of ct_abdomen_3mm again, alone in their label maps and listed ORGAN_COPIES times, so
# that a good share of the training objects are organ-sized (a sampler draws objects uniformly).
ORGANS = ("liver", "spleen", "kidney_right", "kidney_left", "stomach", "gallbladder", "pancreas")
ORGAN_COPIES = 16
# The demo recipe: the official protocol, made affordable on a CPU (4 objects per encoder pass, loss at 64^3),
# with 10 % of the simulated clicks deep inside the error region (otherwise uniform, as the official random
# clicker), 8 clicks per session and a class-balanced cross-entropy; 80 % of the crops get a random new contrast
# (sammed3d.training.augment) so that what is learnt on CT carries over to MR. See the model card for the run.
RECIPE = ["--objects-per-crop", "4", "--loss-size", "64", "--deep-clicks", "0.1", "--clicks", "8",
          "--balanced-ce", "--contrast-aug", "0.8", "--lr", "2e-4", "--warmup", "50", "--lr-milestones", "0.8",
          "--save-every", "50"]


def shared_ct_dataset(shared, out):
    """The shared training CTs as an nnU-Net dataset (images as NIfTI, labels in the image grid)."""
    if os.path.isfile(os.path.join(out, "dataset.json")):
        return out
    os.makedirs(os.path.join(out, "imagesTr"), exist_ok=True)
    os.makedirs(os.path.join(out, "labelsTr"), exist_ok=True)
    names, count = {}, 0
    for case, (image_name, copies) in CASES.items():
        folder = os.path.join(shared, case)
        image = read_image(os.path.join(folder, image_name))
        label = load_label_in_image_grid(os.path.join(folder, "labels.nii.gz"), image)
        with open(os.path.join(folder, "labels.json")) as handle:
            names.update({int(k): v for k, v in json.load(handle).items()})
        for copy in range(copies):
            stem = case if copy == 0 else "%s_copy%d" % (case, copy)
            sitk.WriteImage(image, os.path.join(out, "imagesTr", stem + "_0000.nii.gz"), True)
            sitk.WriteImage(label, os.path.join(out, "labelsTr", stem + ".nii.gz"), True)
            count += 1
    labels = {"background": 0}
    labels.update({name: value for value, name in sorted(names.items())})
    with open(os.path.join(out, "dataset.json"), "w") as handle:
        json.dump({"labels": labels, "channel_names": {"0": "CT"}, "file_ending": ".nii.gz",
                   "numTraining": count}, handle, indent=1)
    return out


def organ_dataset(shared, out, copies=ORGAN_COPIES, case="ct_abdomen_3mm"):
    """ct_abdomen_3mm with only the ORGANS labelled, listed ``copies`` times (an nnU-Net dataset)."""
    if os.path.isfile(os.path.join(out, "dataset.json")):
        return out
    os.makedirs(os.path.join(out, "imagesTr"), exist_ok=True)
    os.makedirs(os.path.join(out, "labelsTr"), exist_ok=True)
    folder = os.path.join(shared, case)
    image = read_image(os.path.join(folder, "image.nii.gz"))
    label = load_label_in_image_grid(os.path.join(folder, "labels.nii.gz"), image)
    with open(os.path.join(folder, "labels.json")) as handle:
        names = {int(k): v for k, v in json.load(handle).items() if v in ORGANS}
    array = sitk.GetArrayFromImage(label)
    array[~np.isin(array, list(names))] = 0
    organs = sitk.GetImageFromArray(array)
    organs.CopyInformation(label)
    for copy in range(copies):
        stem = "%s_organs%02d" % (case, copy)
        sitk.WriteImage(image, os.path.join(out, "imagesTr", stem + "_0000.nii.gz"), True)
        sitk.WriteImage(organs, os.path.join(out, "labelsTr", stem + ".nii.gz"), True)
    labels = {"background": 0}
    labels.update({name: value for value, name in sorted(names.items())})
    with open(os.path.join(out, "dataset.json"), "w") as handle:
        json.dump({"labels": labels, "channel_names": {"0": "CT"}, "file_ending": ".nii.gz",
                   "numTraining": copies}, handle, indent=1)
    return out


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared", "data"))
    parser.add_argument("--init", default=None, help="initial weights (default: copy of the bundled demo model)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--organ-copies", type=int, default=ORGAN_COPIES,
                        help="times the organ-only copy of ct_abdomen_3mm is listed (0: none)")
    args = parser.parse_args(argv)
    synthetic = os.path.join(args.work, "synthetic")
    if not os.path.isfile(os.path.join(synthetic, "dataset.json")):
        subprocess.check_call([sys.executable, os.path.join(HERE, "make_demo_data.py"), synthetic,
                               "--cases", str(args.cases), "--seed", "1"])
    datasets = [synthetic]
    if os.path.isdir(args.shared):
        datasets.append(shared_ct_dataset(args.shared, os.path.join(args.work, "shared_ct")))
        if args.organ_copies > 0:
            datasets.append(organ_dataset(args.shared, os.path.join(args.work, "organs"), args.organ_copies))
    mni = os.path.join(args.work, "mni")
    if not os.path.isfile(os.path.join(mni, "dataset.json")):
        try:
            subprocess.check_call([sys.executable, os.path.join(HERE, "make_mni_data.py"), mni, "--copies", "4"])
        except subprocess.CalledProcessError:
            print("no MNI152 data (pip install nilearn); training without it", file=sys.stderr)
    if os.path.isfile(os.path.join(mni, "dataset.json")):
        datasets.append(mni)
    init = args.init
    if init is None:
        init = os.path.join(args.work, "init.safetensors")
        if not os.path.isfile(init):
            shutil.copyfile(os.path.join(HERE, "..", "SAMMed3DSlicer", "sammed3d", "data", "sam_med3d_demo.safetensors"),
                            init)
    run = os.path.join(args.work, "run")
    command = [sys.executable, "-m", "sammed3d", "train", *datasets, "-o", run, "--config", "tiny",
               "--steps", str(args.steps), "--threads", str(args.threads), *RECIPE, *extra]
    if init != "none":
        command += ["--init", init]
    if os.path.isfile(os.path.join(run, "checkpoint.pth")):
        command.append("--resume")
    print(" ".join(command), file=sys.stderr)
    start = time.time()
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "..", "SAMMed3DSlicer"))
    subprocess.check_call(command, env=env)
    print("training wall time %.0f s" % (time.time() - start), file=sys.stderr)
    from sammed3d.training import export_safetensors

    out = export_safetensors(os.path.join(run, "checkpoint.pth"), os.path.join(args.work, "sam_med3d_demo.safetensors"),
                             metadata={"format": "pt", "config": "tiny", "trained_steps": str(args.steps)})
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
