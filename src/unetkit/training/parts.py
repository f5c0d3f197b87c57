"""Everything a training step touches, assembled once from the config by `build_parts`: kept apart from
the loop so `fit` reads as epochs, and so benchmarks can build the same parts the loop trains with.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from unetkit import distributed
from unetkit.config import TrainConfig
from unetkit.models.base import SegmentationNet
from unetkit.models.encoder_unet import SegmentationOutputs
from unetkit.runtime import has_bf16, log
from unetkit.training.averaging import Snapshots, warm_ema
from unetkit.training.checkpoint import Checkpoint
from unetkit.training.init import initial_net
from unetkit.training.losses import LossFn, get_loss
from unetkit.training.schedule import OPTIMIZERS, StepSchedule, make_plateau


class TrainingForward(nn.Module):
    """`net.training_outputs` as a module's forward, so DistributedDataParallel and torch.compile wrap it."""

    def __init__(self, net: SegmentationNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> SegmentationOutputs:
        return self.net.training_outputs(x)  # type: ignore[operator]


@dataclass
class Parts:
    config: TrainConfig
    net: SegmentationNet  # the weights being trained (never wrapped: its state_dict keys stay clean)
    forward: torch.nn.Module  # net (or its training_outputs), wrapped in DDP under torchrun, optionally compiled
    ema: AveragedModel | None
    optimizer: torch.optim.Optimizer
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau
    schedule: StepSchedule
    loss_fn: LossFn  # the first stage's loss; validation losses always use it, so val_loss means one thing
    device: torch.device
    autocast: Any  # a context-manager factory
    scaler: torch.amp.GradScaler | None
    second_loss_fn: LossFn | None = None  # loss.second_name, trained with from loss.second_at on
    swa: AveragedModel | None = None  # optim.swa_start: the running average of epoch-end weights
    snapshots: Snapshots | None = None  # schedule.snapshots: writes the weights at each SGDR cycle's end
    stage: int = 1  # 2 once the second stage started (TrainState.stage keeps it across resumes)
    ema_floor: torch.Tensor | None = None  # the EMA's least weight of new weights, set before each step (averaging.py)

    @property
    def evaluated(self) -> torch.nn.Module:
        """The weights that are validated and saved: the EMA when enabled."""
        return self.ema.module if self.ema is not None else self.net

    @property
    def train_loss_fn(self) -> LossFn:
        return self.second_loss_fn if self.stage == 2 and self.second_loss_fn is not None else self.loss_fn

    def extras(self) -> dict[str, Any]:
        optional = {"ema": self.ema, "swa": self.swa, "scaler": self.scaler}
        return {name: part.state_dict() for name, part in optional.items() if part is not None}


def build_parts(config: TrainConfig, steps_per_epoch: int, resume: Checkpoint | None,
                class_weights: tuple[float, ...] | None, device: torch.device, *, monitor: str) -> Parts:
    torch.manual_seed(config.seed)
    if config.runtime.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    # channels_last: faster convolutions on CPU (benchmarks/RESULTS.md) and the layout tensor cores want.
    net = (resume.net if resume else initial_net(config)).to(device, memory_format=torch.channels_last)
    if config.runtime.sync_batchnorm and distributed.launched():
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    if distributed.rank():  # same initial weights (DDP broadcasts rank 0's anyway), different dropout draws
        torch.manual_seed(config.seed + distributed.rank())
    optimizer = OPTIMIZERS[config.optim.name](net.parameters(), config.optim)
    plateau = make_plateau(optimizer, config, monitor)
    floor = torch.zeros((), device=device) if config.optim.ema_decay else None
    ema = AveragedModel(net, multi_avg_fn=warm_ema(config.optim.ema_decay, floor), use_buffers=True) \
        if config.optim.ema_decay else None
    # SWA averages parameters only; batch-norm statistics are recomputed for the average at the end.
    swa = AveragedModel(net) if config.optim.swa_start is not None else None
    amp_dtype = _amp_dtype(config.runtime.amp, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    if resume:  # the optimizer, the plateau's counters (its settings stay the config's), the optional parts, the RNG
        optimizer.load_state_dict(resume.optimizer)
        plateau.load_state_dict(resume.scheduler)
        fresh = make_plateau(optimizer, config, monitor)
        plateau.patience, plateau.factor, plateau.min_lrs = fresh.patience, fresh.factor, fresh.min_lrs
        for name, part in {"ema": ema, "swa": swa, "scaler": scaler}.items():
            if part is not None and name in resume.extras:
                part.load_state_dict(resume.extras[name])
        resume.restore_rng(distributed.rank(), config.seed, device)
    options = dataclasses.replace(config.loss, class_weights=class_weights)
    losses = [partial(get_loss(name, field), options=options, ignore_index=config.data.ignore_index) if name else None
              for name, field in ((config.loss.name, "loss.name"), (config.loss.second_name, "loss.second_name"))]
    autocast = partial(torch.autocast, device_type=device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext
    # Nets with extra training outputs (deep supervision, image head) are trained through them; DDP and
    # compile wrap that call, so their gradients are synchronised like the logits'.
    forward: torch.nn.Module = TrainingForward(net) if callable(getattr(net, "training_outputs", None)) else net
    if distributed.launched():
        forward = DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None)
    return Parts(config, net, torch.compile(forward) if config.runtime.compile else forward, ema, optimizer, plateau,
                 StepSchedule(config, steps_per_epoch), losses[0], device, autocast, scaler,  # type: ignore[arg-type]
                 second_loss_fn=losses[1], swa=swa, stage=resume.state.stage if resume else 1, ema_floor=floor)


def _amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast's dtype. GPUs: bf16 where native, else fp16 (with a grad scaler). CPUs: bf16 where the
    CPU has bf16 instructions (AVX512-BF16, AMX), which trains faster than fp32 there
    (benchmarks/cpu_precision.py); elsewhere fp32, because emulated bf16 is slower."""
    if mode == "off" or device.type not in ("cuda", "cpu"):
        return None
    if device.type == "cpu":
        if mode == "fp16":  # a GPU config run on a laptop: trains, as auto would
            log.info("runtime.amp fp16 is for GPUs; on the CPU it means auto (bf16 where the CPU has it, else fp32)")
        return torch.bfloat16 if mode == "bf16" or has_bf16(device) else None
    return torch.float16 if mode == "fp16" or (mode == "auto" and not has_bf16(device)) else torch.bfloat16
