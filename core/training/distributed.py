"""Several processes, one training run: `torchrun --nproc_per_node=N -m core.train ...`.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; we join a process group (gloo on CPU, nccl on GPU), wrap
the model in DistributedDataParallel, give each rank its share of the batches, sum evaluation over ranks,
and let rank 0 alone write checkpoints, events and logs. Without torchrun, every function here is a
no-op for a single process.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as td


def world_size() -> int:
    return td.get_world_size() if td.is_available() and td.is_initialized() else 1


def rank() -> int:
    return td.get_rank() if td.is_available() and td.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun; returns this rank's device."""
    if not launched_by_torchrun() or td.is_initialized():
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    td.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=10))
    return device


def teardown() -> None:
    if td.is_available() and td.is_initialized():
        td.destroy_process_group()


def _device() -> torch.device:
    if td.is_initialized() and td.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_sum(values: list[float]) -> list[float]:
    """Sum a few numbers over ranks (evaluation sums, token counts)."""
    if world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    td.all_reduce(t, op=td.ReduceOp.SUM)
    return t.tolist()


def any_rank(flag: bool) -> bool:
    """True on every rank when it is True on some rank (a stop request, a time limit)."""
    if world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_device())
    td.all_reduce(t, op=td.ReduceOp.MAX)
    return bool(t.item())


def all_finite(loss: torch.Tensor) -> bool:
    """Is the loss finite on every rank? (All ranks must skip a step together, or DDP would hang.)"""
    return not any_rank(not bool(torch.isfinite(loss)))


def shard(items: list, *, seed: int, epoch: int) -> list:
    """This rank's share of an epoch's batches, through torch's DistributedSampler (drop_last)."""
    if world_size() == 1:
        return items
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(len(items)), num_replicas=world_size(), rank=rank(), shuffle=True, seed=seed, drop_last=True
    )
    sampler.set_epoch(epoch)
    return [items[i] for i in sampler]
