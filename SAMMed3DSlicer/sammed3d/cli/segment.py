"""`sammed3d segment`: clicks in RAS mm -> a binary mask on the input image's own grid."""
from __future__ import annotations

import time
from pathlib import Path

from ..errors import PromptError, SamMed3DError

DESCRIPTION = """Segment one object from positive/negative points. Points are RAS millimetres (Slicer's world
coordinates, as shown in Slicer's data probe). The output has the input's geometry (uint8 0/1); an existing output
file is only replaced by a complete new one."""


def add_parser(subparsers) -> None:
    from ..devices import DEVICE_CHOICES, PRECISION_CHOICES

    parser = subparsers.add_parser("segment", help="segment an object from clicks", description=DESCRIPTION)
    parser.add_argument("image", help="image file (.nii.gz, .nrrd, .mha, ...) or DICOM series folder")
    parser.add_argument("-o", "--output", required=True, help="output mask (.nii.gz, .nii, .nrrd, .seg.nrrd, .mha)")
    parser.add_argument("--point", nargs=3, type=float, action="append", default=[], metavar=("R", "A", "S"),
                        help="positive point in RAS mm (repeatable)")
    parser.add_argument("--negative", nargs=3, type=float, action="append", default=[], metavar=("R", "A", "S"),
                        help="negative point in RAS mm (repeatable)")
    parser.add_argument("--points", metavar="FILE.mrk.json",
                        help="Slicer markups file; points labelled '-...' or described 'negative' are negative")
    parser.add_argument("--checkpoint", default=None,
                        help="turbo (SAM-Med3D default), medsam (MedSAM default), demo, or a path; named ones are "
                             "downloaded once")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--precision", default="fp32", choices=PRECISION_CHOICES,
                        help="fp32 (exact, default) or reduced-precision autocast (GPU)")
    parser.add_argument("--official-mapping", action="store_true",
                        help="map the 1.5 mm binary mask back by nearest neighbour, as the official code")
    parser.add_argument("--max-rois", type=int, default=1,
                        help="ROIs one object may span: 1 (default) = the official single 128^3 ROI of 192 mm; "
                             "e.g. 6 follows larger objects (a liver) into neighbour ROIs")
    parser.add_argument("--server", metavar="URL",
                        help="compute on a `sammed3d serve` server (e.g. http://gpu-box:8000) instead of here")
    parser.add_argument("--token", help="the server's token (default: $SAMMED3D_TOKEN)")
    parser.add_argument("--save-roi", metavar="DIR", help="write what the model saw: ROI input and probabilities")
    parser.add_argument("--overlay", metavar="PNG", help="also write a PNG of three slices through the first point")
    from .segment_box import add_box_arguments

    add_box_arguments(parser)
    parser.set_defaults(func=run)


def _clicks(args):
    from .segment_box import box_centre_clicks

    clicks = box_centre_clicks(args)  # a box: SAM-Med3D clicks its centre (the official CVPR25 baseline)
    clicks += [(tuple(p), True) for p in args.point] + [(tuple(p), False) for p in args.negative]
    if args.points:
        from .checks import markups_clicks

        clicks += markups_clicks(args.points, given=len(clicks))
    if not clicks:
        raise PromptError("no point given: use --point R A S (RAS mm), --negative R A S, --points FILE.mrk.json "
                          "or a box (--box, --roi)")
    if not any(positive for _, positive in clicks):
        raise PromptError("at least one positive point is needed")
    # The first click centres the ROI: start with the first positive one, keep the others in their given order.
    first = next(i for i, (_, positive) in enumerate(clicks) if positive)
    return [clicks[first]] + clicks[:first] + clicks[first + 1:]


def _remote_session(args, image, options):
    import os

    from ..remote import RemoteSession, connect

    if args.save_roi:
        raise SamMed3DError("--save-roi needs the model on this computer (leave out --server)")
    connection = connect(args.server, args.token or os.environ.get("SAMMED3D_TOKEN"))
    print("model: %s on %s at %s" % (connection.info.get("model", "?"), connection.info.get("device", "?"),
                                    connection.url))
    return RemoteSession(connection, image, **options)


def run(args) -> int:
    from ..image_io import WRITE_SUFFIXES, read_image, write_image_atomic
    from ..output_paths import check_outputs
    from .checks import require_overlay_support, warn_about_nonfinite_voxels

    timings = {}
    output = Path(args.output)
    check_outputs([("-o", args.output, WRITE_SUFFIXES), ("--overlay", args.overlay, (".png",)),
                   ("--save-roi", args.save_roi, None)], inputs=[args.image, args.points, args.roi])
    if args.overlay:
        require_overlay_support()
    from .segment_box import resolve_checkpoint_name, run_medsam

    if args.model == "medsam":
        return run_medsam(args, output)
    args.checkpoint = resolve_checkpoint_name(args)
    clicks = _clicks(args)
    if args.max_rois < 1:
        raise SamMed3DError("--max-rois must be at least 1")

    start = time.perf_counter()
    image = read_image(args.image)
    timings["read"] = time.perf_counter() - start
    warn_about_nonfinite_voxels(image, args.image)

    from ..session import check_clicks_inside

    check_clicks_inside(image, clicks)
    options = dict(mapping="official" if args.official_mapping else "linear", max_rois=args.max_rois,
                   precision=args.precision)
    start = time.perf_counter()
    if args.server:
        session = _remote_session(args, image, options)
    else:
        from .. import load_model
        from ..devices import describe_device
        from ..session import InteractiveSession

        model = load_model(args.checkpoint, device=args.device)
        if hasattr(model, "decode_boxes"):
            raise SamMed3DError("checkpoint %s holds MedSAM weights: add --model medsam and a box" % args.checkpoint)
        print("model: %s on %s" % (args.checkpoint, describe_device(model.device)))
        session = InteractiveSession(model, image, **options)
    timings["load"] = time.perf_counter() - start
    parts = ("upload", "roi", "encoder", "decoder", "mapping") if args.server else ("roi", "encoder", "decoder",
                                                                                      "mapping")
    for key in parts:
        timings[key] = 0.0
    for click in clicks:
        session.add_point(*click)
        for key in parts:
            timings[key] += session.last_timings.get(key, 0.0)
    mask = session.mask_image()

    if args.overlay:
        from ..overlay import write_overlay_png

        write_overlay_png(image, mask, clicks[0][0], Path(args.overlay), clicks=clicks)
    if args.save_roi:
        from ..roi_export import save_rois

        save_rois(session, Path(args.save_roi))
    start = time.perf_counter()
    write_image_atomic(mask, output, segment_names={1: "SAM-Med3D"})
    timings["write"] = time.perf_counter() - start

    import SimpleITK as sitk

    voxels = int((sitk.GetArrayViewFromImage(mask) > 0).sum())
    rois = session.roi_count if args.server else len(session.rois)
    print("wrote %s: %d voxels, %d click(s), %d ROI(s)" % (output, voxels, len(clicks), rois))
    print("timings: " + ", ".join("%s %.3f s" % (k, v) for k, v in timings.items()))
    return 0
