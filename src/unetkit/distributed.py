"""Who this process is in a torchrun job, and the few collective steps training and prediction need.

unetkit ships no launcher: `torchrun` (PyTorch's own, on one node or many) starts one process
per GPU or CPU slot and sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous. `join` turns
that into a process group (nccl on GPUs, gloo on CPUs) the first time a command needs it.
Outside torchrun every function here is a no-op for a single process, so callers never branch
on "distributed or not". torch is imported inside the functions: the ONNX prediction path asks
`rank()` and `world_size()` without importing torch.
"""

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


def _active() -> bool:
    if not launched():
        return False
    import torch.distributed as dist

    return dist.is_initialized()


def join(device_type: str) -> None:
    """Join the torchrun process group once: nccl when the ranks train on CUDA GPUs, else gloo."""
    if not launched():
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    # Generous: the other ranks wait while rank 0 alone tunes the decision rule and writes the report.
    timeout = timedelta(minutes=60)
    if device_type == "cuda":
        torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank()), timeout=timeout)
    else:
        dist.init_process_group("gloo", timeout=timeout)


def leave() -> None:
    """At the end of a successful command: wait for every rank, then tear the process group down.

    Without the wait a rank that finished early (rank 0 still writing the report) destroys its
    end of the group under the others, and gloo aborts the process. After an error there is no
    wait: the failing rank exits and torchrun stops the rest.
    """
    if _active():
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if _active():
        import torch.distributed as dist

        dist.barrier()


def all_gather(value: Any) -> list[Any]:
    """Every rank's `value` (any picklable object; these never leave the job), in rank order."""
    if not _active():
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def from_main(value: Any) -> Any:
    """Rank 0's `value` on every rank (what rank 0 alone computed or decided)."""
    if not _active():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_across(values: list[float], device: Any) -> list[float]:
    """Element-wise sums over the ranks, identical on every rank."""
    if not _active():
        return values
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def any_rank(flag: bool, device: Any) -> bool:
    """True on every rank when `flag` is true on any: how the ranks agree to stop together."""
    if not _active():
        return flag
    return sum_across([float(flag)], device)[0] > 0
