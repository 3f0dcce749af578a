"""Data-parallel training under ``torchrun``: detect the launcher's environment, pick the backend and device."""
from __future__ import annotations

import os
from collections import namedtuple

import torch
import torch.distributed as dist

from ..devices import resolve_device
from ..errors import SamMed3DError

DistInfo = namedtuple("DistInfo", ["rank", "world_size", "local_rank", "device"])
DistInfo.__doc__ = "This process's rank, the number of processes, its rank on this node, and its torch device."


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str = "auto") -> DistInfo:
    """Initialise the process group when launched by torchrun (gloo on CPU, nccl on CUDA); else a single process."""
    if not launched_by_torchrun():
        return DistInfo(0, 1, 0, resolve_device(device))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device(device)
    if chosen.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise SamMed3DError("LOCAL_RANK %d but only %d CUDA devices" % (local_rank, torch.cuda.device_count()))
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
        backend = "nccl"
    elif chosen.type == "cpu":
        backend = "gloo"
    else:
        raise SamMed3DError("distributed training supports cpu (gloo) and cuda (nccl), not %s" % chosen.type)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local_rank, chosen)


def mean_across(values, info: DistInfo):
    """Average a list of floats over all processes (identity for one process)."""
    if info.world_size == 1:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor)
    return (tensor / info.world_size).tolist()


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def teardown(info: DistInfo) -> None:
    if info.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
