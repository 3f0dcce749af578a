"""`sammed3d evaluate`: Dice and NSD vs number of simulated clicks over a labelled dataset (the paper's protocol)."""
from __future__ import annotations

DESCRIPTION = """Evaluate a checkpoint on an nnU-Net dataset (imagesTs/labelsTs, else imagesTr/labelsTr, dataset.json)
or the SAM-Med3D per-class layout. Every label of every case is segmented with simulated clicks; writes
OUT/metrics.csv, OUT/summary.json, OUT/dice_vs_clicks.png and OUT/predictions/<case>/<label>.nii.gz. Re-running the
same command resumes: finished rows are skipped."""


def add_parser(subparsers) -> None:
    from ..devices import DEVICE_CHOICES, PRECISION_CHOICES

    parser = subparsers.add_parser("evaluate", help="Dice/NSD vs clicks on a labelled dataset",
                                   description=DESCRIPTION)
    parser.add_argument("dataset", help="dataset folder")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--model", default="sam-med3d", choices=["sam-med3d", "medsam"],
                        help="sam-med3d (simulated clicks, default) or medsam (box protocol: one jittered box per "
                             "object from its label)")
    parser.add_argument("--checkpoint", default=None,
                        help="turbo (SAM-Med3D default), medsam (MedSAM default), demo, or a path")
    parser.add_argument("--box-jitter", type=int, default=5, metavar="PX",
                        help="medsam: each box side moves outward by a random 0..PX pixels (default 5)")
    parser.add_argument("--modality", default="auto", choices=["auto", "CT", "MR"],
                        help="medsam: intensity normalisation (CT window, MR percentiles; auto: CT when a voxel is "
                             "below -200, default)")
    parser.add_argument("--window", nargs=2, type=float, default=[40.0, 400.0], metavar=("LEVEL", "WIDTH"),
                        help="medsam: CT window (default 40 400)")
    parser.add_argument("--clicks", nargs="+", type=int, default=[1, 3, 5, 10], help="click counts to report")
    parser.add_argument("--labels", nargs="+", help="label values or names to evaluate (default: all)")
    parser.add_argument("--clicker", default="random", choices=["random", "ritm"],
                        help="click simulation: 'random' (official) or 'ritm' (distance transform)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nsd-tolerance", type=float, default=2.0, metavar="MM", help="NSD tolerance (mm)")
    parser.add_argument("--split", choices=["Tr", "Ts"], help="force the nnU-Net split (default: Ts if labelled)")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--precision", default="fp32", choices=PRECISION_CHOICES)
    parser.add_argument("--official-mapping", action="store_true", help="official nearest-neighbour mapping")
    parser.add_argument("--max-rois", type=int, default=1,
                        help="ROIs one object may span (default 1: the official single-ROI protocol)")
    parser.set_defaults(func=run)


def run(args) -> int:
    import os

    from .. import load_model
    from ..devices import describe_device
    from ..errors import SamMed3DError
    from ..evaluation.datasets import find_cases
    from ..evaluation.loop import click_to_ras, validate_click_counts
    from ..evaluation.runner import check_labels_exist, check_resume, evaluate_dataset, run_settings
    from ..output_paths import check_output_folder
    from ..session import InteractiveSession

    cases = find_cases(args.dataset, split=args.split)
    if not cases:
        raise SamMed3DError("no labelled cases found in %s" % args.dataset)
    check_output_folder(args.output, option="-o", parents=True)
    check_labels_exist(cases, args.labels)
    if args.model == "medsam":
        from .evaluate_box import run_medsam_evaluation

        return run_medsam_evaluation(args, cases)
    if args.checkpoint is None:
        args.checkpoint = "turbo"
    mapping = "official" if args.official_mapping else "linear"
    settings = {"checkpoint": str(args.checkpoint), "mapping": mapping, "max_rois": args.max_rois,
                "precision": args.precision, "dataset": os.path.abspath(args.dataset), "split": args.split}
    # before the model loads: a folder that cannot be written, or holds results of other settings, costs nothing
    validate_click_counts(args.clicks)
    check_resume(args.output, run_settings(cases, settings, args.clicker, args.seed, args.nsd_tolerance,
                                           args.labels))
    model = load_model(args.checkpoint, device=args.device)
    print("model: %s on %s; %d case(s)" % (args.checkpoint, describe_device(model.device), len(cases)))

    def make_predict_fn(image, case, label):
        session = InteractiveSession(model, image, mapping=mapping, max_rois=args.max_rois,
                                     precision=args.precision)

        def predict(clicks):
            point, positive = click_to_ras(image, clicks[-1])
            session.add_point(point, positive)
            return session.mask_array().astype(bool)

        return predict

    summary = evaluate_dataset(cases, make_predict_fn, args.output, args.clicks, clicker=args.clicker,
                               seed=args.seed, labels=args.labels, nsd_tolerance_mm=args.nsd_tolerance,
                               settings=settings)
    print("wrote %s" % args.output)
    for entry in summary["overall"]:
        print("  %2d click(s): mean Dice %.3f, NSD %.3f over %d object(s)"
              % (entry["clicks"], entry["dice"], entry["nsd"], entry["n"]))
    return 0
