"""Optimisers and learning-rate schedules, laid out over the run's length or its time budget.

Schedules are functions of training progress p in [0, 1]. With a time budget, p is the share of the budget spent
(when it exceeds the share of epochs done), so a cosine or poly schedule ends its decay when the budget ends instead
of at a guessed epoch count. "plateau" is the seed's ReduceLROnPlateau, stepped per epoch on the monitored value.
"sgdr" (Loshchilov & Hutter 2017, as the TGS winners used it) is `schedule.cycles` equal cosine cycles over the run,
each restarting at the peak; with `schedule.snapshots` the weights at the end of every cycle become the members of
one ensemble (training/averaging.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from unetkit.config import OptimConfig, TrainConfig
from unetkit.errors import UserError
from unetkit.measures import monitor_minimizes

OPTIMIZERS: dict[str, Callable[[Iterable[torch.nn.Parameter], OptimConfig], torch.optim.Optimizer]] = {
    "adam": lambda params, o: torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay),  # the seed's
    "adamw": lambda params, o: torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay),
    "sgd": lambda params, o: torch.optim.SGD(params, lr=o.lr, momentum=0.9, nesterov=True, weight_decay=o.weight_decay),
}
# "plateau" is stepped per epoch on the monitored value; the others are functions of progress (lr_at).
SCHEDULES = ("plateau", "cosine", "sgdr", "onecycle", "poly", "constant")


def check_names(config: TrainConfig) -> None:
    """Refuse an unknown optimiser or schedule with one line listing the known ones."""
    if config.optim.name not in OPTIMIZERS:
        raise UserError(f"config field 'optim.name': '{config.optim.name}' is not one of {', '.join(OPTIMIZERS)}")
    if config.schedule.name not in SCHEDULES:
        raise UserError(f"config field 'schedule.name': '{config.schedule.name}' is not one of {', '.join(SCHEDULES)}")
    if config.schedule.snapshots and config.schedule.name != "sgdr":
        raise UserError(f"config field 'schedule.snapshots': needs schedule.name sgdr (one snapshot per cosine "
                        f"cycle), not {config.schedule.name}")


def make_plateau(optimizer: torch.optim.Optimizer, config: TrainConfig,
                 monitor: str) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """The seed's reduce-on-plateau on the run's monitor (a no-op for other schedules: patience never runs out)."""
    schedule = config.schedule
    patience = schedule.plateau_patience if schedule.name == "plateau" else 10**9
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min" if monitor_minimizes(monitor) else "max", factor=schedule.plateau_factor,
        patience=patience, min_lr=schedule.min_lr)


def lr_at(progress: float, config: TrainConfig, warmup: float, peak: float | None = None) -> float:
    """Learning rate at training progress `progress` in [0, 1]; `warmup` is the warm-up share of the run;
    `peak` replaces optim.lr (a second stage's loss.second_lr)."""
    p = min(max(progress, 0.0), 1.0)
    peak = config.optim.lr if peak is None else peak
    floor = min(config.schedule.min_lr, peak)
    if config.schedule.name == "onecycle":  # warm up from lr/25 over 30%, then cosine down to lr/1e4
        if p < 0.3:
            return peak / 25 + (peak - peak / 25) * p / 0.3
        return peak / 1e4 + (peak - peak / 1e4) * 0.5 * (1 + math.cos(math.pi * (p - 0.3) / 0.7))
    if warmup > 0 and p < warmup:
        return peak * max(p / warmup, 0.01)
    rest = (p - warmup) / (1 - warmup) if warmup < 1 else 1.0
    if config.schedule.name == "cosine":
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * rest))
    if config.schedule.name == "sgdr":
        done, position = divmod(rest * config.schedule.cycles, 1.0)  # cycles completed, position in the current
        position = 1.0 if done >= config.schedule.cycles else position  # the very end: the last cycle's floor
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * position))
    if config.schedule.name == "poly":
        return peak * (1 - rest) ** 0.9
    return peak


class StepSchedule:
    """Sets the learning rate before every step from progress (steps done vs planned, budget spent)."""

    def __init__(self, config: TrainConfig, steps_per_epoch: int) -> None:
        self.config = config
        self.active = config.schedule.name != "plateau"
        self.budget_s = config.time_budget_min * 60 if config.time_budget_min else None
        if config.epochs is None:  # as many epochs as the budget allows: warm up over steps, then the budget's share
            self.total_steps, self.warmup = None, 0.0
            self.warmup_steps = config.schedule.warmup_epochs * steps_per_epoch
        else:
            self.total_steps = max(config.epochs * steps_per_epoch, 1)
            self.warmup, self.warmup_steps = min(config.schedule.warmup_epochs / config.epochs, 0.5), 0.0

    def progress(self, steps_done: int, elapsed_s: float) -> float:
        by_steps = steps_done / self.total_steps if self.total_steps else 0.0
        return max(by_steps, elapsed_s / self.budget_s) if self.budget_s else by_steps

    def cycles_done(self, progress: float) -> int:
        """SGDR cycles completed at `progress` (at most schedule.cycles), after the warm-up."""
        p = min(max(progress, 0.0), 1.0)
        rest = max(p - self.warmup, 0.0) / (1 - self.warmup) if self.warmup < 1 else 1.0
        return min(int(divmod(rest * self.config.schedule.cycles, 1.0)[0]), self.config.schedule.cycles)

    def apply(self, optimizer: torch.optim.Optimizer, steps_done: int, elapsed_s: float,
              peak: float | None = None) -> None:
        """Set the learning rate for the next step; `peak` replaces optim.lr (the second stage's lr)."""
        if not self.active:
            return
        lr = lr_at(self.progress(steps_done, elapsed_s), self.config, self.warmup, peak)
        if self.warmup_steps and self.config.schedule.name != "onecycle":  # onecycle warms up by its own rule
            lr *= min(max(steps_done / self.warmup_steps, 0.01), 1.0)
        for group in optimizer.param_groups:
            group["lr"] = lr
