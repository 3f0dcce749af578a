"""Box prompts for `sammed3d segment`: `--box R1 A1 S1 R2 A2 S2` / `--roi FILE.mrk.json`, and the MedSAM run.

With `--model medsam` the box drives MedSAM slice by slice (the official 3D protocol); with SAM-Med3D a box becomes
its centre click (the official CVPR25 baseline).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

from ..errors import PromptError, SamMed3DError

MODELS = ("sam-med3d", "medsam")
DEFAULT_CHECKPOINTS = {"sam-med3d": "turbo", "medsam": "medsam"}


def add_box_arguments(parser) -> None:
    """The model choice and box options of `segment`."""
    parser.add_argument("--model", default="sam-med3d", choices=MODELS,
                        help="sam-med3d (3D clicks, default) or medsam (a box, propagated slice by slice)")
    parser.add_argument("--box", nargs=6, type=float, metavar=("R1", "A1", "S1", "R2", "A2", "S2"),
                        help="box prompt: two opposite corners in RAS mm; MedSAM segments the slices of its S range "
                             "(SAM-Med3D clicks its centre)")
    parser.add_argument("--roi", metavar="FILE.mrk.json", help="box prompt from a Slicer ROI markups file")
    parser.add_argument("--modality", default="auto", choices=["auto", "CT", "MR"],
                        help="medsam: intensity normalisation: CT window, MR percentiles, or auto (default: CT when "
                             "a voxel is below -200, i.e. air/lung/fat in HU, else MR)")
    parser.add_argument("--window", nargs=2, type=float, default=[40.0, 400.0], metavar=("LEVEL", "WIDTH"),
                        help="medsam: CT window in HU (default 40 400, MedSAM's)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="medsam: slices per encoder forward (default 1 on the CPU, 8 on a GPU)")


def resolve_checkpoint_name(args) -> str:
    """--checkpoint, else the model's default (turbo for SAM-Med3D, medsam for MedSAM)."""
    return args.checkpoint if args.checkpoint is not None else DEFAULT_CHECKPOINTS[args.model]


def box_from_args(args):
    """The Box of --box or --roi (None when neither); both at once is an error."""
    from ..prompts import Box

    box = getattr(args, "box", None)
    roi = getattr(args, "roi", None)
    if box is not None and roi:
        raise PromptError("give either --box or --roi, not both")
    if box is not None:
        return Box(tuple(box[:3]), tuple(box[3:]))
    if roi:
        from ..roi_markup import read_roi_box

        return read_roi_box(roi)
    return None


def box_centre_clicks(args) -> List:
    """SAM-Med3D: a box becomes one positive click at its centre (first, so it centres the ROI)."""
    box = box_from_args(args)
    return [] if box is None else [(box.centre, True)]


def _progress_bar(total_hint: Optional[int] = None):
    from tqdm import tqdm

    bar = tqdm(total=total_hint, unit="slice", desc="MedSAM", leave=False)

    def report(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return bar, report


def _local_medsam(args, image):
    """A MedSamSession on this computer (loads the weights; one line when they are SAM-Med3D's)."""
    from .. import load_model
    from ..devices import describe_device
    from ..medsam.session import MedSamSession

    checkpoint = resolve_checkpoint_name(args)
    model = load_model(checkpoint, device=args.device)
    if not hasattr(model, "decode_boxes"):
        raise SamMed3DError("checkpoint %s holds SAM-Med3D weights; --model medsam needs MedSAM weights" % checkpoint)
    print("model: medsam (%s) on %s" % (checkpoint, describe_device(model.device)))
    session = MedSamSession(model, image, modality=args.modality, window=tuple(args.window),
                            batch_size=args.batch_size, precision=args.precision)
    print("intensities: %s" % ("CT, window %g %g" % tuple(args.window) if session.modality == "CT"
                               else "MR, 0.5-99.5 percentiles") + (" (auto)" if args.modality == "auto" else ""))
    return session


def _remote_medsam(args, image, box):
    """The box on a `sammed3d serve` MedSAM server: (mask, timings, segmented slices)."""
    import os

    import numpy as np

    from ..remote import RemoteSession, connect

    if args.checkpoint is not None or args.batch_size is not None:
        raise SamMed3DError("--checkpoint and --batch-size are the server's choice with --server (leave them out)")
    if args.modality != "auto" or list(args.window) != [40.0, 400.0]:
        raise SamMed3DError("a MedSAM server picks CT (window 40 400) or MR itself: --modality and --window need "
                            "the model on this computer (leave out --server)")
    connection = connect(args.server, args.token or os.environ.get("SAMMED3D_TOKEN"))
    session = RemoteSession(connection, image, precision=args.precision)
    if not session.takes_boxes:
        raise SamMed3DError("the server at %s runs SAM-Med3D, not MedSAM: leave out --model medsam (the box then "
                            "becomes its centre click)" % connection.url)
    print("model: medsam (%s) on %s at %s" % (connection.info.get("model", "?"), connection.info.get("device", "?"),
                                             connection.url))
    try:
        mask = session.set_box(box)
        array = session.mask_array()
    finally:
        session.close()
    slices = [int(k) for k in np.nonzero(array.reshape(array.shape[0], -1).any(axis=1))[0]]
    timings = {key: float(value) for key, value in session.last_timings.items()}
    return mask, timings, slices


def run_medsam(args, output: Path) -> int:
    """`segment --model medsam`: read, check, load, propagate the box (here or on --server), write; prints like the
    SAM-Med3D path."""
    from ..image_io import read_image, write_image_atomic

    if args.point or args.negative or args.points:
        raise PromptError("MedSAM takes a box (--box or --roi), not points")
    if args.save_roi:
        raise SamMed3DError("--save-roi is for SAM-Med3D; MedSAM works on whole slices")
    if args.batch_size is not None and args.batch_size < 1:
        raise SamMed3DError("--batch-size must be at least 1")
    box = box_from_args(args)
    if box is None:
        raise PromptError("no box given: use --box R1 A1 S1 R2 A2 S2 (RAS mm) or --roi FILE.mrk.json")
    timings = {}
    start = time.perf_counter()
    image = read_image(args.image)
    timings["read"] = time.perf_counter() - start
    box.index_bounds(image)  # fails fast, before the weights load, when the box misses the image

    start = time.perf_counter()
    if args.server:
        mask, server_timings, slices = _remote_medsam(args, image, box)
        timings["remote"] = time.perf_counter() - start  # connect, upload, compute, answer
        timings_run = {key: server_timings[key] for key in ("preprocess", "encoder", "decoder")
                       if key in server_timings}  # the server's own share
        key_slice = None
    else:
        session = _local_medsam(args, image)
        timings["load"] = time.perf_counter() - start
        bar, report = _progress_bar()
        try:
            session.progress = report
            mask = session.set_box(box)
        finally:
            bar.close()
        timings_run = {key: session.last_timings[key] for key in ("preprocess", "encoder", "decoder")}
        slices, key_slice = session.slices, session.key_slice
    timings.update(timings_run)

    if args.overlay:
        from ..overlay import write_overlay_png

        write_overlay_png(image, mask, box.centre, Path(args.overlay))
    start = time.perf_counter()
    write_image_atomic(mask, output, segment_names={1: "MedSAM"})
    timings["write"] = time.perf_counter() - start

    import SimpleITK as sitk

    voxels = int((sitk.GetArrayViewFromImage(mask) > 0).sum())
    span = "%d..%d" % (slices[0], slices[-1]) if slices else "none"
    key = "" if key_slice is None else "key slice k=%d, " % key_slice
    print("wrote %s: %d voxels, %s%d slice(s) segmented (k %s)" % (output, voxels, key, len(slices), span))
    print("timings: " + ", ".join("%s %.3f s" % (k, v) for k, v in timings.items()))
    return 0
