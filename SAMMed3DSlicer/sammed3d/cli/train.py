"""`sammed3d train DATASET... -o OUT`: interactive fine-tuning; also runs under `torchrun -m sammed3d train ...`."""
from __future__ import annotations

import logging
import os
import sys

from ..errors import SamMed3DError

DESCRIPTION = """Train or fine-tune SAM-Med3D with simulated clicks (the official protocol: 128^3 crops at 1.5 mm
around each label, random flips, several click iterations with the previous mask fed back, DiceCE, AdamW, multi-step
learning rate). DATASET: nnU-Net folders (dataset.json, imagesTr, labelsTr) or SAM-Med3D per-class folders; every
label of every case is a training object. Writes OUT/checkpoint.pth (official format, atomically, every --save-every
steps and at the end) and OUT/train_log.csv. Multi-process: torchrun --nproc_per_node N -m sammed3d train ..."""


def add_parser(subparsers):
    parser = subparsers.add_parser("train", help="train / fine-tune on labelled images", description=DESCRIPTION)
    parser.add_argument("datasets", nargs="+", metavar="DATASET", help="dataset folder(s)")
    parser.add_argument("-o", "--out", required=True, help="output folder (checkpoint.pth, train_log.csv)")
    parser.add_argument("--config", default="tiny", choices=("tiny", "vit_b"), help="model size (default tiny)")
    parser.add_argument("--init", default=None,
                        help="initial weights: a checkpoint path, 'turbo' or 'demo' (default: random init)")
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps in all (default 1000)")
    parser.add_argument("--batch-size", type=int, default=1, help="crops per process per micro-batch (default 1)")
    parser.add_argument("--accumulate", type=int, default=1,
                        help="micro-batches per optimizer step (gradient accumulation, default 1)")
    parser.add_argument("--lr", type=float, default=8e-4, help="AdamW learning rate (default 8e-4)")
    parser.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay (default 0.1)")
    parser.add_argument("--lr-milestones", type=float, nargs="*", default=[0.6, 0.9],
                        help="fractions of --steps where the lr is multiplied by --gamma (default 0.6 0.9)")
    parser.add_argument("--gamma", type=float, default=0.1, help="lr factor at each milestone (default 0.1)")
    parser.add_argument("--warmup", type=int, default=0, help="linear lr warm-up steps (default 0)")
    parser.add_argument("--clicks", type=int, default=6, dest="iterations",
                        help="click iterations per crop (default 6)")
    parser.add_argument("--no-mask-only", dest="mask_only", action="store_false",
                        help="do not use a mask-prompt-only iteration")
    parser.add_argument("--amp", action="store_true", help="mixed precision (fp16 on CUDA, bf16 on CPU)")
    parser.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pth (model, optimizer, lr, step)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto; torchrun: one GPU per process)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--save-every", type=int, default=50, help="checkpoint every N steps (default 50; 0: end only)")
    parser.add_argument("--split", default="Tr", choices=("Tr", "Ts"), help="nnU-Net split to train on (default Tr)")
    parser.add_argument("--labels", nargs="*", default=[], dest="include_labels", metavar="LABEL",
                        help="train only on these label names or values")
    parser.add_argument("--exclude-labels", nargs="*", default=[], metavar="LABEL",
                        help="never train on these label names or values")
    parser.add_argument("--center-jitter", type=float, default=15.0, help="crop centre jitter in mm (default 15)")
    parser.add_argument("--objects-per-crop", type=int, default=1,
                        help="train on up to N labelled objects of each crop with one encoder pass (default 1, "
                             "as the official code; more objects per second of training)")
    parser.add_argument("--deep-clicks", type=float, default=0.0, metavar="P",
                        help="probability of simulating a click deep inside the error region instead of uniformly "
                             "in it (default 0: the official protocol)")
    parser.add_argument("--loss-size", type=int, default=0, metavar="N",
                        help="compute the loss at N^3 instead of the full 128^3 crop (e.g. 64: faster on CPUs; "
                             "default: full size, as the official code)")
    parser.add_argument("--balanced-ce", action="store_true",
                        help="average the cross-entropy separately over object and background voxels (helps "
                             "training from scratch; default: plain DiceCE, as the official code)")
    parser.add_argument("--contrast-aug", type=float, default=0.0, metavar="P",
                        help="probability of a random contrast remap of each crop (non-monotone intensity curve, "
                             "per-label intensities, bias field, blur, noise), so CT-trained models read MR "
                             "(default 0: the official pipeline)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per process (default: torch's choice)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from ..training import TrainOptions, train

    values = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    values["datasets"] = [os.path.abspath(d) for d in values["datasets"]]
    values["lr_milestones"] = tuple(values["lr_milestones"])
    options = TrainOptions(**values)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def progress(step, loss, dice):
        if step == 1 or step % 10 == 0 or step == options.steps:
            print("step %d/%d  loss %.4f  dice %.3f" % (step, options.steps, loss, dice), file=sys.stderr, flush=True)

    try:
        path = train(options, progress=progress)
    except OSError as exc:  # unwritable output folder, disk full, ...
        raise SamMed3DError(str(exc))
    if rank == 0:
        print(path)
    return 0
