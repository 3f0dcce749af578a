#!/usr/bin/env python
"""Dice at 1/5/10 simulated clicks of a checkpoint on the demo model's held-out sets, over several clicker seeds.

The sets are the nnU-Net folders of scripts/make_demo_eval_data.py (the held-out shared DICOM CT and its MR-like
proxies, liver and spleen; MR-like proxies of the 3 mm training CT, liver, spleen and kidneys). `sammed3d evaluate`
scores one clicker seed; with two objects per set one click draw moves the mean by +-0.1, so this script averages
several seeds (the random clicker of `sammed3d evaluate`, the package's own interactive session). Prints one line
per set and the mean over each group of proxies; optional JSON.

    python scripts/eval_demo.py CHECKPOINT EVAL_DIR [--seeds 100 101 102 103] [--clicker random] [--json out.json]
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "SAMMed3DSlicer"))

from sammed3d import load_model  # noqa: E402
from sammed3d.evaluation import click_to_ras, dice, evaluate_case, make_clicker  # noqa: E402
from sammed3d.evaluation.datasets import find_cases, load_label_in_image_grid, read_image  # noqa: E402
from sammed3d.session import InteractiveSession  # noqa: E402
import SimpleITK as sitk  # noqa: E402

SETS = ("ct", "mr_proxy_t1", "mr_proxy_t2", "mr_proxy_t1fs_ce",
        "train3mm_mr_proxy_t1", "train3mm_mr_proxy_t2", "train3mm_mr_proxy_t1fs_ce")
COUNTS = (1, 5, 10)


def evaluate_set(model, folder, seeds, clicker_name, max_rois=1):
    """{clicks: mean Dice} over every case, label and seed of one nnU-Net folder."""
    scores = {count: [] for count in COUNTS}
    for case in find_cases(folder):
        image = read_image(case.image_path)
        labels = sitk.GetArrayFromImage(load_label_in_image_grid(case.label_path, image))
        for value, name in sorted(case.labels.items()):
            gt = labels == value
            if value == 0 or gt.sum() < 10:
                continue
            for seed in seeds:
                session = InteractiveSession(model, image, max_rois=max_rois)

                def predict(clicks):
                    session.set_clicks([click_to_ras(image, c) for c in clicks])
                    return session.mask_array() > 0

                clicker = make_clicker(clicker_name, seed, os.path.basename(folder), str(value))
                for result in evaluate_case(predict, image, gt, clicker, list(COUNTS)):
                    scores[result.clicks].append(dice(gt, result.mask))
    return {count: float(np.mean(values)) for count, values in scores.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="demo, turbo or a path")
    parser.add_argument("eval_dir", help="output folder of scripts/make_demo_eval_data.py")
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102, 103])
    parser.add_argument("--clicker", default="random", choices=("random", "ritm"))
    parser.add_argument("--max-rois", type=int, default=1, help="1 = the official single ROI (default)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    model = load_model(args.checkpoint, device="cpu")
    results = {}
    for name in SETS:
        folder = os.path.join(args.eval_dir, name)
        if not os.path.isdir(folder):
            continue
        results[name] = evaluate_set(model, folder, args.seeds, args.clicker, args.max_rois)
        print("%-18s %s" % (name, "  ".join("%d:%.3f" % item for item in results[name].items())), flush=True)
    for prefix, title in (("mr_proxy", "MR proxies, mean"), ("train3mm_mr_proxy", "training-case proxies, mean")):
        proxies = [scores for name, scores in results.items() if name.startswith(prefix + "_")]
        if proxies:
            mean = {count: float(np.mean([p[count] for p in proxies])) for count in COUNTS}
            results[prefix + "_mean"] = mean
            print("%-18s %s" % (title, "  ".join("%d:%.3f" % item for item in mean.items())))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
