"""Resumable checkpoints: weights, optimizer, scheduler, loop state and RNG, pickle-free.

Resume must restore everything that shapes the next epoch, not only the weights (the peers' most common resume
complaint): Adam's moments and step counts, the plateau scheduler's counters, early-stopping state, elapsed time for
the budget, the metrics history and the torch RNG that drives dropout (every torchrun rank's own), the training
stage, the SWA average (tensors, with its count) and how many SGDR snapshots are written.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unetkit.config import TrainConfig, from_dict, to_dict
from unetkit.data.preprocess import Preprocess
from unetkit.errors import UserError
from unetkit.export import tensor_tree
from unetkit.export.model_file import (
    CHECKPOINT_FORMAT,
    FORMAT_VERSION,
    model_from_parts,
    model_metadata,
    read_safetensors,
    write_safetensors,
)
from unetkit.models.base import SegmentationNet

RngState = tuple[torch.Tensor, torch.Tensor | None]  # (CPU generator, this process's CUDA generator)


@dataclass
class TrainState:
    """Loop state that survives a restart."""

    epoch: int = 0  # epochs completed
    steps: int = 0  # optimizer steps taken
    best_value: float | None = None  # best value of config.monitor so far
    best_epoch: int = 0  # 1-based epoch of best_value
    stale_epochs: int = 0  # epochs since the monitor last improved
    elapsed_s: float = 0.0  # training time spent, counted against the time budget
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch (metrics.csv)
    stage: int = 1  # 2 once loss.second_name took over (never back: a longer resumed run keeps it)
    snapshots: int = 0  # SGDR snapshots written (checkpoints/snapshot_<i>.safetensors, i < snapshots)


@dataclass
class Checkpoint:
    """Everything `fit` needs to continue a run."""

    config: TrainConfig
    net: SegmentationNet
    preprocess: Preprocess
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    state: TrainState
    rng: torch.Tensor
    cuda_rng: list[torch.Tensor]
    extras: dict[str, Any]  # state dicts of optional parts: "ema", "swa", "scaler"
    rank_rng: dict[int, RngState] = field(default_factory=dict)  # torchrun ranks 1.. of the run that wrote it

    def restore_rng(self, rank: int = 0, seed: int = 0, device: torch.device | None = None) -> None:
        """Put the random generators of this process (torchrun rank, on `device`) back where they were."""
        if rank == 0:
            torch.set_rng_state(self.rng)
            if self.cuda_rng and torch.cuda.is_available() and len(self.cuda_rng) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(self.cuda_rng)
        elif rank in self.rank_rng:
            cpu, cuda = self.rank_rng[rank]
            torch.set_rng_state(cpu)
            if cuda is not None and device is not None and device.type == "cuda":
                torch.cuda.set_rng_state(cuda, device)
        else:  # resumed with more ranks than the run had: a fresh, reproducible stream
            torch.manual_seed(seed + rank + 1000 * self.state.epoch)


def rng_state(device: torch.device) -> RngState:
    """This process's generator states, gathered from every rank before rank 0 checkpoints."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def save_checkpoint(path: str | os.PathLike[str], config: TrainConfig, net: SegmentationNet, preprocess: Preprocess,
                    optimizer: torch.optim.Optimizer, scheduler: Any, state: TrainState,
                    extras: dict[str, Any] | None = None, rank_rngs: Sequence[RngState] = ()) -> None:
    """Write a checkpoint atomically (the previous one stays valid until the rename). `rank_rngs`: the
    generator states of torchrun ranks 1, 2, ... (rank 0 is this process)."""
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    metadata = model_metadata(net, preprocess, 0.5, {})
    metadata.update({
        "format": CHECKPOINT_FORMAT,
        "config": json.dumps(to_dict(config)),
        "optimizer": tensor_tree.dumps(optimizer.state_dict(), "optimizer", tensors),
        "scheduler": tensor_tree.dumps(scheduler.state_dict(), "scheduler", tensors),
        "state": json.dumps(dataclasses.asdict(state)),
        "extras": tensor_tree.dumps(extras or {}, "extras", tensors),
    })
    tensors["rng"] = torch.get_rng_state()
    if torch.cuda.is_available():  # dropout on the GPU draws from the CUDA generators
        tensors.update({f"cuda_rng.{i}": state for i, state in enumerate(torch.cuda.get_rng_state_all())})
    for rank, (cpu, cuda) in enumerate(rank_rngs, start=1):
        tensors[f"rank_rng.{rank}"] = cpu
        if cuda is not None:
            tensors[f"rank_cuda_rng.{rank}"] = cuda
    write_safetensors(path, tensors, metadata)


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    file = Path(path)
    tensors, metadata = read_safetensors(file, CHECKPOINT_FORMAT)
    try:
        config = from_dict(TrainConfig, json.loads(metadata["config"]))
        model_state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
        saved = model_from_parts(file, model_state, metadata)
        state = TrainState(**json.loads(metadata["state"]))
        optimizer = tensor_tree.loads(metadata["optimizer"], tensors)
        scheduler = tensor_tree.loads(metadata["scheduler"], tensors)
        rng = tensors["rng"]
        extras = tensor_tree.loads(metadata.get("extras", '{"__dict__": []}'), tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{file}: checkpoint is incomplete ({exc}); format {FORMAT_VERSION}") from None
    except UserError as exc:
        raise UserError(f"{file}: stored {exc}") from None
    cuda_rng = [tensors[f"cuda_rng.{i}"] for i in range(sum(k.startswith("cuda_rng.") for k in tensors))]
    rank_rng = {int(k.split(".")[1]): (v, tensors.get(f"rank_cuda_rng.{k.split('.')[1]}"))
                for k, v in tensors.items() if k.startswith("rank_rng.")}
    return Checkpoint(config, saved.net, saved.preprocess, optimizer, scheduler, state, rng, cuda_rng, extras,
                      rank_rng)
