"""Optimisers and learning-rate schedules, laid out over the run's length or its time budget.

Schedules are functions of training progress p in [0, 1]. With a time budget, p is the
share of the budget spent (when it exceeds the share of epochs done), so a cosine or poly
schedule ends its decay when the budget ends instead of at a guessed epoch count.
"plateau" is the seed's ReduceLROnPlateau, stepped per epoch on the monitored value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from unetkit.config import TrainConfig


def make_optimizer(params: Iterable[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """Adam (the seed), AdamW or SGD with Nesterov momentum 0.9."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def make_plateau(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """The seed's reduce-on-plateau on config.monitor (a no-op for other schedules: patience never runs out)."""
    patience = config.plateau_patience if config.schedule == "plateau" else 10**9
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min" if config.monitor == "val_loss" else "max", factor=config.plateau_factor,
        patience=patience, min_lr=config.min_lr)


def lr_at(progress: float, config: TrainConfig, warmup: float) -> float:
    """Learning rate at training progress `progress` in [0, 1]; `warmup` is the warm-up share of the run."""
    p = min(max(progress, 0.0), 1.0)
    peak, floor = config.lr, min(config.min_lr, config.lr)
    if config.schedule == "onecycle":  # warm up from lr/25 over 30%, then cosine down to lr/1e4
        if p < 0.3:
            return peak / 25 + (peak - peak / 25) * p / 0.3
        return peak / 1e4 + (peak - peak / 1e4) * 0.5 * (1 + math.cos(math.pi * (p - 0.3) / 0.7))
    if warmup > 0 and p < warmup:
        return peak * max(p / warmup, 0.01)
    rest = (p - warmup) / (1 - warmup) if warmup < 1 else 1.0
    if config.schedule == "cosine":
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * rest))
    if config.schedule == "poly":
        return peak * (1 - rest) ** 0.9
    return peak


class StepSchedule:
    """Sets the learning rate before every step from progress (steps done vs planned, budget spent)."""

    def __init__(self, config: TrainConfig, steps_per_epoch: int) -> None:
        self.config = config
        self.total_steps = max(config.epochs * steps_per_epoch, 1)
        self.warmup = min(config.warmup_epochs / config.epochs, 0.5) if config.epochs else 0.0
        self.budget_s = config.time_budget_min * 60 if config.time_budget_min else None

    @property
    def active(self) -> bool:
        return self.config.schedule != "plateau"

    def progress(self, steps_done: int, elapsed_s: float) -> float:
        by_steps = steps_done / self.total_steps
        return max(by_steps, elapsed_s / self.budget_s) if self.budget_s else by_steps

    def apply(self, optimizer: torch.optim.Optimizer, steps_done: int, elapsed_s: float) -> None:
        if not self.active:
            return
        lr = lr_at(self.progress(steps_done, elapsed_s), self.config, self.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
