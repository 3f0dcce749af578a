#!/usr/bin/env python
"""Dice at 1/5/10 simulated clicks of a checkpoint on the shared abdominal CTs (liver, spleen, kidneys).

Uses the package's own interactive session (the path every user takes) and the evaluation package's click
simulators. Prints a table and writes JSON.

    python scripts/eval_demo.py CHECKPOINT [--data ../shared/data] [--clicker ritm random] [--json out.json]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "SAMMed3DSlicer"))

from sammed3d import load_model  # noqa: E402
from sammed3d.evaluation import click_to_ras, dice, evaluate_case, load_label_in_image_grid, make_clicker  # noqa: E402
from sammed3d.evaluation.datasets import read_image  # noqa: E402
from sammed3d.session import InteractiveSession  # noqa: E402
import SimpleITK as sitk  # noqa: E402

ORGANS = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "liver": 5}
CASES = {"ct_abdomen_3mm": "image.nii.gz", "ct_abdomen_dicom": "dicom"}


def evaluate(model, data, clicker_name, counts=(1, 5, 10), max_rois=6, seed=0):
    rows = []
    for case, image_name in CASES.items():
        folder = os.path.join(data, case)
        if not os.path.isdir(folder):
            continue
        image = read_image(os.path.join(folder, image_name))
        labels = sitk.GetArrayFromImage(load_label_in_image_grid(os.path.join(folder, "labels.nii.gz"), image))
        for organ, value in ORGANS.items():
            gt = labels == value
            if gt.sum() < 10:
                continue
            session = InteractiveSession(model, image, max_rois=max_rois)

            def predict(clicks):
                session.set_clicks([click_to_ras(image, c) for c in clicks])
                return session.mask_array() > 0

            start = time.time()
            results = evaluate_case(predict, image, gt, make_clicker(clicker_name, seed, case, organ), counts)
            scores = {r.clicks: dice(gt, r.mask) for r in results}
            rows.append({"case": case, "organ": organ, "clicker": clicker_name, "dice": scores,
                         "seconds": time.time() - start})
            print("%-18s %-13s %-6s %s" % (case, organ, clicker_name,
                                           "  ".join("%d:%.3f" % (k, v) for k, v in scores.items())), flush=True)
    return rows


def summarize(rows, counts=(1, 5, 10)):
    summary = {}
    for clicker in sorted({r["clicker"] for r in rows}):
        for case in sorted({r["case"] for r in rows}):
            chosen = [r for r in rows if r["clicker"] == clicker and r["case"] == case]
            summary["%s/%s" % (case, clicker)] = {c: float(np.mean([r["dice"][c] for r in chosen])) for c in counts}
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    parser.add_argument("--clicker", nargs="+", default=["ritm", "random"])
    parser.add_argument("--max-rois", type=int, default=6, help="1 = the official single ROI")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    model = load_model(args.checkpoint, device="cpu")
    rows = []
    for clicker in args.clicker:
        rows += evaluate(model, args.data, clicker, max_rois=args.max_rois)
    summary = summarize(rows)
    for key, scores in summary.items():
        print("mean %-32s %s" % (key, "  ".join("%d:%.3f" % (k, v) for k, v in scores.items())))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows": rows, "summary": summary}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
