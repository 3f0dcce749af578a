"""`sammed3d evaluate --model medsam`: the box protocol (see :mod:`sammed3d.evaluation.boxes`), Dice/NSD as usual.

Each object is segmented once from its jittered, seeded box; results are reported in the "1 prompt" row. Slice
embeddings are shared by the objects of one case.
"""
from __future__ import annotations


def run_medsam_evaluation(args, cases) -> int:
    from .. import load_model
    from ..devices import describe_device
    from ..errors import SamMed3DError
    from ..evaluation.boxes import box_rng, label_box
    from ..evaluation.datasets import load_label_in_image_grid
    from ..evaluation.runner import evaluate_dataset
    from ..medsam.session import MedSamSession

    checkpoint = args.checkpoint if args.checkpoint is not None else "medsam"
    model = load_model(checkpoint, device=args.device)
    if not hasattr(model, "decode_boxes"):
        raise SamMed3DError("checkpoint %s holds SAM-Med3D weights; --model medsam needs MedSAM weights" % checkpoint)
    print("model: medsam (%s) on %s; %d case(s), box protocol (jitter 0-%d px, seed %d)"
          % (checkpoint, describe_device(model.device), len(cases), args.box_jitter, args.seed))
    sessions = {}

    def make_predict_fn(image, case, label):
        import SimpleITK as sitk

        if case.case_id not in sessions:
            sessions.clear()  # one case at a time: keep only its slice embeddings
            sessions[case.case_id] = MedSamSession(model, image, modality=args.modality, window=tuple(args.window),
                                                   precision=args.precision)
        session = sessions[case.case_id]
        gt = sitk.GetArrayViewFromImage(load_label_in_image_grid(case.label_path, image)) == label
        box = label_box(gt, image, box_rng(args.seed, case.case_id, label), args.box_jitter)

        def predict(clicks):
            session.set_box(box)
            return session.mask_array().astype(bool)

        return predict

    settings = {"model": "medsam", "checkpoint": str(checkpoint), "protocol": "box", "box_jitter": args.box_jitter,
                "modality": args.modality, "window": list(args.window), "precision": args.precision}
    summary = evaluate_dataset(cases, make_predict_fn, args.output, [1], clicker=args.clicker, seed=args.seed,
                               labels=args.labels, nsd_tolerance_mm=args.nsd_tolerance, settings=settings)
    print("wrote %s" % args.output)
    for entry in summary["overall"]:
        print("  box: mean Dice %.3f, NSD %.3f over %d object(s)" % (entry["dice"], entry["nsd"], entry["n"]))
    return 0
