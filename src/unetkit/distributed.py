"""Who this process is in a torchrun job, and the few collective steps training and prediction need.

unetkit ships no launcher: `torchrun` starts one process per GPU or CPU slot and sets RANK,
WORLD_SIZE, LOCAL_RANK and the rendezvous. Outside torchrun every function here is a no-op, so
callers never branch on "distributed or not". torch is imported inside the functions: the ONNX
prediction path asks `rank()` and `world_size()` without importing torch."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any


def launched() -> bool:
    """True inside a torchrun job of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    return int(os.environ.get("RANK", "0")) if launched() else 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if launched() else 0


def is_main() -> bool:
    """Rank 0 writes the run's files (metrics, plots, checkpoints, logs); the others only compute."""
    return rank() == 0


def _group() -> Any:
    """torch.distributed once this process has joined a group, else None (a single process)."""
    if not launched():
        return None
    import torch.distributed as dist

    return dist if dist.is_initialized() else None


def join(device_type: str) -> None:
    """Join the torchrun process group once: nccl when the ranks train on CUDA GPUs, else gloo."""
    if not launched() or _group() is not None:
        return
    import torch
    import torch.distributed as dist

    # Generous: the other ranks wait while rank 0 alone tunes the decision rule and writes the report.
    timeout = timedelta(minutes=60)
    if device_type == "cuda":
        torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank()), timeout=timeout)
    else:
        dist.init_process_group("gloo", timeout=timeout)


def leave() -> None:
    """At the end of a successful command: wait for every rank, then tear the process group down. Without
    the wait a rank that finished early destroys its end of the group under the others (rank 0 still
    writing the report), and gloo aborts. After an error torchrun stops the rest."""
    if (dist := _group()) is not None:
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if (dist := _group()) is not None:
        dist.barrier()


def all_gather(value: Any) -> list[Any]:
    """Every rank's `value` (any picklable object; these never leave the job), in rank order."""
    if (dist := _group()) is None:
        return [value]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def from_main(value: Any) -> Any:
    """Rank 0's `value` on every rank (what rank 0 alone computed or decided)."""
    if (dist := _group()) is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_across(values: list[float], device: Any) -> list[float]:
    """Element-wise sums over the ranks, identical on every rank."""
    if (dist := _group()) is None:
        return values
    import torch

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def any_rank(flag: bool, device: Any) -> bool:
    """True on every rank when `flag` is true on any: how the ranks agree to stop together."""
    return sum_across([float(flag)], device)[0] > 0
