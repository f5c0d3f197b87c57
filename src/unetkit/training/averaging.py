"""The model a run ends with when it averages: SGDR snapshots, stochastic weight averaging, or an exponential moving
average of the weights.

- Snapshots (`schedule.snapshots` with `schedule.name: sgdr`, Huang et al. 2017, as the TGS winners did): the weights
  at the end of every cosine cycle, written as they are reached (the checkpoint counts them, so a resumed run rewrites
  only those it had not recorded); a run that stops before its last cycle ends adds its final weights. They become one
  ensemble model file.
- SWA (`optim.swa_start`, Izmailov et al. 2018): the weights at the end of every epoch from that share of the run on,
  averaged; batch-norm statistics recomputed on the unaugmented training images.
- EMA (`optim.ema_decay`): the average validates, is checkpointed and is saved. Where a schedule is laid over the run
  (not plateau), its horizon is at most `EMA_RUN_SHARE` of the run's steps (`ema_floor`), so that a short run's
  average has settled on its last weights when it ends instead of lagging behind a model that is still improving fast.
Otherwise the model is the best checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, update_bn

from unetkit.data.loader import Batches
from unetkit.data.preprocess import Preprocess
from unetkit.export.model_file import load_model, save_model
from unetkit.models.base import SegmentationNet
from unetkit.runtime import log
from unetkit.training.checkpoint import TrainState

EMA_RUN_SHARE = 0.2  # the EMA's horizon is at most this share of the run's (estimated) steps


def ema_floor(steps_done: int, progress: float) -> float:
    """The least weight of the newest weights in the EMA when `steps_done` steps are `progress` of the
    run: one over EMA_RUN_SHARE of the run's steps as estimated from them (0 before the first step)."""
    return 0.0 if steps_done <= 0 or progress <= 0 else min(1.0, progress / (EMA_RUN_SHARE * steps_done))


def warm_ema(decay: float, floor: torch.Tensor | None = None
             ) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """The EMA update for AveragedModel(multi_avg_fn=...), with decay min(decay, n / (n + 1)) after n models: the
    plain mean of the weights so far, until the mean is as long as the EMA's horizon; `floor` (a 0-d tensor the loop
    sets from the run's progress, `ema_floor`) bounds the new weights' share from below, capping the horizon.
    torch's own EMA (get_ema_multi_avg_fn) starts from a copy of the first weights and decays them: after n steps
    they still weigh decay**n, which is 0.67 after 200 steps at decay 0.998. A short run would then save mostly its
    first weights."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        # the new weights' share, 1 - min(decay, n / (n + 1)), computed where the count lives: reading it
        # (or passing it to _foreach_lerp_, which takes a Python number) would make the step wait for the
        # GPU twice more, beside the two waits AveragedModel.update_parameters has of its own
        weight = (1.0 / (n_averaged + 1)).clamp(min=1.0 - decay)
        if floor is not None:
            weight = torch.maximum(weight, floor.to(weight.dtype))
        if torch.is_floating_point(averaged[0]):
            step = torch._foreach_sub(current, averaged)
            torch._foreach_mul_(step, weight)
            torch._foreach_add_(averaged, step)
        else:  # integer buffers (batch norm's step counters): the in-place float arithmetic above refuses them
            for mean, new in zip(averaged, current, strict=True):
                mean.copy_(mean * (1 - weight) + new * weight)

    return update


class Snapshots:
    """Writes the weights at the end of each SGDR cycle (rank 0), counting them in the TrainState."""

    def __init__(self, folder: Path, preprocess: Preprocess, write: bool) -> None:
        self.folder, self.preprocess, self.write = folder, preprocess, write

    def path(self, index: int) -> Path:
        return self.folder / f"snapshot_{index}.safetensors"

    def take(self, net: torch.nn.Module, state: TrainState) -> None:
        """Save `net`'s weights as the next snapshot (an ordinary model file), counted in `state`."""
        if self.write:
            save_model(self.path(state.snapshots), net, self.preprocess, training={"snapshot": state.snapshots})
        state.snapshots += 1
        log.info("snapshot %d saved", state.snapshots)

    def members(self, count: int, device: torch.device) -> list[SegmentationNet]:
        return [load_model(self.path(i)).net.to(device, memory_format=torch.channels_last)  # type: ignore[misc]
                for i in range(count)]


def swa_update(swa: AveragedModel | None, net: torch.nn.Module, progress: float, start: float | None) -> None:
    if swa is not None and start is not None and progress >= start:
        swa.update_parameters(net)


def swa_model(swa: AveragedModel, batches: Batches, device: torch.device) -> SegmentationNet | None:
    """The averaged net with batch-norm statistics recomputed over one epoch of the training batches
    (whole images in order without augmentation, or patches as drawn); None if nothing was averaged."""
    if int(swa.n_averaged) == 0:
        return None
    net: SegmentationNet = swa.module  # type: ignore[assignment]
    update_bn((batch.images.to(device, memory_format=torch.channels_last) for batch in batches.in_order().epoch(0)), net,
              device=None)
    return net.eval()
