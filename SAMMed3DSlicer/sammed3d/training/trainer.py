"""The training loop: options, model initialisation, optimizer and schedule, logging, checkpoints, resume, DDP."""
from __future__ import annotations

import contextlib
import csv
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..atomic import atomic_path
from ..errors import CheckpointError, SamMed3DError
from ..evaluation.datasets import find_cases
from ..loading import model_from_state_dict
from ..model import SamMed3D, SamMed3DConfig, build_sam_med3d, config_from_state_dict
from ..output_paths import check_output_folder
from ..weights import read_state_dict, resolve_checkpoint
from . import distributed
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, plain_namespace, save_checkpoint
from .crops import CropSampler
from .interaction import InteractiveTraining

log = logging.getLogger(__name__)

LOG_NAME = "train_log.csv"
LOG_COLUMNS = ("step", "loss", "dice", "lr", "seconds", "elapsed")


@dataclass
class TrainOptions:
    """Everything `sammed3d train` accepts (defaults: the official recipe where it applies)."""

    datasets: List[str]
    out: str
    config: str = "tiny"
    init: Optional[str] = None
    steps: int = 1000
    batch_size: int = 1
    accumulate: int = 1
    lr: float = 8e-4
    weight_decay: float = 0.1
    lr_milestones: Tuple[float, ...] = (0.6, 0.9)  # fractions of `steps` where the lr is multiplied by `gamma`
    gamma: float = 0.1
    warmup: int = 0
    iterations: int = 6
    mask_only: bool = True
    amp: bool = False
    resume: bool = False
    device: str = "auto"
    seed: int = 0
    save_every: int = 50
    split: str = "Tr"
    include_labels: List[str] = field(default_factory=list)
    exclude_labels: List[str] = field(default_factory=list)
    center_jitter: float = 15.0
    objects_per_crop: int = 1
    deep_clicks: float = 0.0
    loss_size: int = 0
    balanced_ce: bool = False
    threads: int = 0
    contrast_aug: float = 0.0


def lr_factor(step: int, options: TrainOptions) -> float:
    """Linear warm-up over ``warmup`` steps, then x gamma at each milestone (fractions of ``steps``)."""
    factor = min(1.0, (step + 1) / float(options.warmup)) if options.warmup > 0 else 1.0
    for fraction in options.lr_milestones:
        if step >= int(round(fraction * options.steps)):
            factor *= options.gamma
    return factor


def initial_model(options: TrainOptions) -> SamMed3D:
    """Random init (official initialisers) or the weights of ``--init`` (a path, "turbo" or "demo"), strictly."""
    try:
        config = SamMed3DConfig.named(options.config)
    except ValueError as exc:
        raise SamMed3DError(str(exc))
    if not options.init:
        return build_sam_med3d(config)
    state_dict = read_state_dict(resolve_checkpoint(options.init))
    found = config_from_state_dict(state_dict)
    if found != config:
        raise CheckpointError(
            "--init %s is a different model size (embed %d, depth %d) than --config %s (embed %d, depth %d)"
            % (options.init, found.encoder_embed_dim, found.encoder_depth, options.config,
               config.encoder_embed_dim, config.encoder_depth)
        )
    return model_from_state_dict({k: v.float() for k, v in state_dict.items()})


def collect_cases(options: TrainOptions):
    if not options.datasets:
        raise SamMed3DError("no dataset given")
    cases = []
    for root in options.datasets:
        found = find_cases(root, split=options.split)
        prefix = os.path.basename(os.path.normpath(root)) + "/" if len(options.datasets) > 1 else ""
        cases += [case._replace(case_id=prefix + case.case_id) for case in found]
    return cases


class _CsvLog(object):
    """Per-step log (rank 0): rows after the resumed step are dropped, then rows are appended and flushed."""

    def __init__(self, path: Path, keep_until: int):
        rows = []
        if keep_until > 0 and path.is_file():
            with open(path, newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if r.get("step", "").isdigit() and int(r["step"]) <= keep_until]
        #: training seconds before this run (the last kept row's ``elapsed``), so a resumed clock continues
        self.elapsed_before = 0.0
        if rows:
            try:
                self.elapsed_before = max(0.0, float(rows[-1].get("elapsed") or 0.0))
            except ValueError:
                pass
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, LOG_COLUMNS)
                writer.writeheader()
                writer.writerows({k: r.get(k, "") for k in LOG_COLUMNS} for r in rows)
        self._handle = open(path, "a", newline="")
        self._writer = csv.writer(self._handle)

    def write(self, row: Sequence[object]) -> None:
        self._writer.writerow(row)
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def _check_out(options: TrainOptions) -> Path:
    out = Path(options.out)
    checkpoint = out / CHECKPOINT_NAME
    if out.exists() and not out.is_dir():
        raise SamMed3DError("output %s exists and is not a folder" % out)
    if checkpoint.exists() and not options.resume:
        raise SamMed3DError("%s already holds a checkpoint; pass --resume to continue it or choose another -o" % out)
    if options.resume and not checkpoint.exists():
        raise SamMed3DError("--resume: no %s in %s" % (CHECKPOINT_NAME, out))
    check_output_folder(options.out, option="-o", parents=True)  # writable, before any data or model is loaded
    return checkpoint


def _validate(options: TrainOptions) -> None:
    for name in ("steps", "batch_size", "accumulate", "iterations", "objects_per_crop"):
        if int(getattr(options, name)) < 1:
            raise SamMed3DError("--%s must be >= 1" % name.replace("_", "-"))
    if not options.lr > 0 or options.weight_decay < 0:
        raise SamMed3DError("--lr must be > 0 and --weight-decay >= 0")


def _continue_schedule(optimizer, scheduler, start: int, options: TrainOptions) -> None:
    """After loading a checkpoint: the learning rate of step ``start`` under THIS run's schedule and options.

    The saved optimizer holds the lr of the old schedule (another --steps moves the milestones, another --lr or
    --warmup changes it); without this the first resumed step would run at the old schedule's rate.
    """
    scheduler.base_lrs = [float(options.lr)] * len(optimizer.param_groups)
    for group in optimizer.param_groups:
        group["initial_lr"] = float(options.lr)
        group["weight_decay"] = float(options.weight_decay)
        group["lr"] = float(options.lr) * lr_factor(start, options)
    scheduler.last_epoch = start
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def train(options: TrainOptions, progress: Optional[Callable[[int, float, float], None]] = None) -> Path:
    """Train (or resume) and return the checkpoint path. ``progress(step, loss, dice)`` is called on rank 0."""
    _validate(options)
    checkpoint_path = _check_out(options)
    info = distributed.setup(options.device)
    try:
        return _train(options, checkpoint_path, info, progress)
    finally:
        distributed.teardown(info)


def _train(options, checkpoint_path: Path, info, progress) -> Path:
    main = info.rank == 0
    if options.threads > 0:
        torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    cases = collect_cases(options)
    sampler = CropSampler(cases, center_jitter=options.center_jitter, include_labels=options.include_labels,
                          exclude_labels=options.exclude_labels, contrast_prob=options.contrast_aug)
    resumed = load_checkpoint(checkpoint_path) if options.resume else None
    if resumed is not None:
        state_dict = resumed["model_state_dict"]
        if config_from_state_dict(state_dict) != SamMed3DConfig.named(options.config):
            raise CheckpointError("--resume: %s holds a different model size than --config %s"
                                  % (checkpoint_path, options.config))
        model = model_from_state_dict({k: v.float() for k, v in state_dict.items()})
    else:
        model = initial_model(options)
    model.to(info.device).train()

    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, options))
    start, losses, dices = 0, [], []
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer_state_dict"])
        scheduler.load_state_dict(resumed["lr_scheduler_state_dict"])
        start = int(resumed["epoch"])
        losses, dices = list(resumed.get("losses") or [])[:start], list(resumed.get("dices") or [])[:start]
        del resumed
        _continue_schedule(optimizer, scheduler, start, options)
    if start >= options.steps:
        if main:
            log.info("checkpoint already at step %d >= --steps %d: nothing to do", start, options.steps)
        return checkpoint_path

    module = InteractiveTraining(model, iterations=options.iterations, mask_only=options.mask_only,
                                 amp=options.amp, deep_clicks=options.deep_clicks,
                                 loss_size=options.loss_size or None, balanced_ce=options.balanced_ce)
    if info.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [info.device.index] if info.device.type == "cuda" else None
        module = DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)
    scaler = torch.amp.GradScaler("cuda") if options.amp and info.device.type == "cuda" else None
    rng = np.random.default_rng([options.seed, info.rank, start])
    generator = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
    args = plain_namespace(dict(asdict(options), model_type=options.config, img_size=128, world_size=info.world_size,
                                click_type="random"))
    used = [case.image_path for case in cases]
    if main:
        checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    csv_log = _CsvLog(checkpoint_path.parent / LOG_NAME, start) if main else None
    began = time.perf_counter() - (csv_log.elapsed_before if csv_log is not None else 0.0)
    try:
        for step in range(start, options.steps):
            step_start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            step_loss = step_dice = 0.0
            for micro in range(options.accumulate):
                images, labels, owners = sampler.batch(rng, options.batch_size, options.objects_per_crop - 1)
                images, labels = images.to(info.device), labels.to(info.device)
                last = micro == options.accumulate - 1
                sync = module.no_sync() if info.world_size > 1 and not last else contextlib.nullcontext()
                with sync:
                    loss, dice = module(images, labels, generator, owners)
                    scaled = loss / options.accumulate
                    (scaler.scale(scaled) if scaler else scaled).backward()
                step_loss += float(loss.detach()) / options.accumulate
                step_dice += dice / options.accumulate
            if not np.isfinite(step_loss):
                raise SamMed3DError("the loss became %s at step %d; lower --lr" % (step_loss, step + 1))
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            step_loss, step_dice = distributed.mean_across([step_loss, step_dice], info)
            losses.append(step_loss)
            dices.append(step_dice)
            done = step + 1
            if main:
                csv_log.write([done, "%.6f" % step_loss, "%.6f" % step_dice, "%.3g" % lr,
                               "%.3f" % (time.perf_counter() - step_start), "%.1f" % (time.perf_counter() - began)])
                if progress is not None:
                    progress(done, step_loss, step_dice)
                if done == options.steps or (options.save_every > 0 and done % options.save_every == 0):
                    save_checkpoint(checkpoint_path, model, optimizer, scheduler, done, losses, dices, args, used)
        distributed.barrier(info)
    finally:
        if csv_log is not None:
            csv_log.close()
    return checkpoint_path
