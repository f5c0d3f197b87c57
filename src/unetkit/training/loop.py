"""The training loop: `fit` is a short sequence of small steps, the seed kernel's recipe by default.

Adam, cross-entropy, random horizontal flips, validation every epoch, reduce-on-plateau
(factor 0.1, patience 5, min lr 1e-5) and early stopping (patience 10) on the monitored
value, best and last checkpoints, then a threshold sweep on validation whose winner goes
into the model file. A time budget ends training cleanly, mid-epoch if need be.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from unetkit.config import TrainConfig, to_dict
from unetkit.data.dataset import LabelledSet
from unetkit.data.loader import BatchIterator
from unetkit.data.preprocess import Preprocess
from unetkit.export.model_file import load_model, save_model
from unetkit.fileio import write_text
from unetkit.metrics import MetricAccumulator
from unetkit.models.unet import UNet
from unetkit.runtime import log, resolve_device
from unetkit.training.checkpoint import Checkpoint, TrainState, save_checkpoint
from unetkit.training.losses import LossFn, get_loss
from unetkit.training.threshold import sweep_threshold
from unetkit.visualize import plot_curves

METRICS_COLUMNS = ("epoch", "train_loss", "val_loss", "val_iou", "val_dice", "val_map", "lr", "seconds", "images_per_s")


@dataclass
class FitResult:
    """What a finished run produced."""

    model_path: Path
    threshold: float | None  # chosen on validation; None for multi-class models
    val_metrics: dict[str, Any]  # at the chosen threshold, best weights
    epochs_done: int
    best_epoch: int
    images_per_s: float
    stop_reason: str


def fit(config: TrainConfig, run_dir: Path, train_set: LabelledSet, val_set: LabelledSet, preprocess: Preprocess,
        resume: Checkpoint | None = None) -> FitResult:
    """Train per `config`, writing checkpoints, metrics.csv and curves.png into `run_dir`."""
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    # channels_last: 10-25% faster convolutions on CPU (measured, 2 cores) and the layout tensor cores want.
    net = (resume.net if resume else UNet(config.model)).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=_mode(config.monitor), factor=config.plateau_factor, patience=config.plateau_patience,
        min_lr=config.min_lr)
    state = TrainState()
    if resume:
        optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(resume.scheduler)
        state = resume.state
        resume.restore_rng()
        log.info("resuming %s after epoch %d", run_dir, state.epoch)
    loss_fn = get_loss(config.loss)
    train_batches = BatchIterator(train_set, preprocess, config.batch_size, shuffle=True,
                                  augment=config.data.augment, seed=config.seed)
    val_batches = BatchIterator(val_set, preprocess, config.batch_size, shuffle=False)
    checkpoints = run_dir / "checkpoints"
    stop_reason = "epochs"
    while state.epoch < config.epochs:
        if config.early_stopping_patience and state.stale_epochs >= config.early_stopping_patience:
            stop_reason = f"early stopping (no {config.monitor} improvement in {state.stale_epochs} epochs)"
            break
        deadline = _deadline(config, state)
        if deadline is not None and deadline <= time.monotonic():
            stop_reason = "time budget"
            break
        row, hit_deadline = _run_epoch(net, config, state, train_batches, val_batches, loss_fn, optimizer,
                                       device, deadline)
        scheduler.step(row[config.monitor])
        if _improved(config.monitor, row[config.monitor], state.best_value):
            state.best_value, state.best_epoch, state.stale_epochs = row[config.monitor], state.epoch, 0
            save_model(checkpoints / "best.safetensors", net, preprocess, training=_record(config, row))
        else:
            state.stale_epochs += 1
        saving_started = time.monotonic()
        write_metrics_csv(state.history, run_dir / "metrics.csv")
        plot_curves(state.history, run_dir / "curves.png")
        state.elapsed_s += time.monotonic() - saving_started  # the budget counts writing too
        save_checkpoint(checkpoints / "last.safetensors", config, net, preprocess, optimizer, scheduler, state)
        _log_epoch(config, row)
        if hit_deadline:
            stop_reason = "time budget"
            break
    return _finish(config, run_dir, net, val_batches, val_set, preprocess, state, device, stop_reason)


def train_one_epoch(net: UNet, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], total: int, loss_fn: LossFn,
                    optimizer: torch.optim.Optimizer, device: torch.device,
                    deadline: float | None) -> tuple[float, int, bool]:
    """One pass over `batches`: (mean loss, images seen, whether the deadline cut it short)."""
    net.train()
    loss_sum, seen = 0.0, 0
    progress = tqdm(batches, total=total, desc="train", unit="batch", leave=False, disable=None)
    for images, masks in progress:
        images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
        masks = masks.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(images), masks)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(images)
        seen += len(images)
        progress.set_postfix(loss=f"{loss_sum / seen:.4f}")
        if deadline is not None and time.monotonic() >= deadline:
            progress.close()
            return loss_sum / seen, seen, True
    return loss_sum / max(seen, 1), seen, False


@torch.no_grad()
def validate(net: UNet, batches: BatchIterator, loss_fn: LossFn, device: torch.device, threshold: float = 0.5,
             keep_probabilities: bool = False) -> tuple[dict[str, Any], torch.Tensor | None]:
    """Loss and metrics on `batches`; optionally the foreground probabilities as uint8 (N, H, W)."""
    net.eval()
    num_classes = net.config.num_classes
    accumulator = MetricAccumulator(num_classes)
    loss_sum, seen, kept = 0.0, 0, []
    for images, masks in batches.epoch(0):
        images, masks = images.to(device, memory_format=torch.channels_last), masks.to(device)
        logits = net(images)
        loss_sum += loss_fn(logits, masks).item() * len(images)
        seen += len(images)
        if num_classes == 1:
            prob = torch.sigmoid(logits[:, 0])
            pred = prob > threshold
        else:
            pred = logits.argmax(1)
            prob = 1 - torch.softmax(logits, 1)[:, 0]  # probability of any foreground
        accumulator.update(pred.to(torch.uint8), masks)
        if keep_probabilities:
            kept.append((prob * 255).round().to(torch.uint8).cpu())
    summary = accumulator.summary() | {"loss": loss_sum / max(seen, 1)}
    return summary, (torch.cat(kept) if keep_probabilities else None)


def _run_epoch(net: UNet, config: TrainConfig, state: TrainState, train_batches: BatchIterator,
               val_batches: BatchIterator, loss_fn: LossFn, optimizer: torch.optim.Optimizer,
               device: torch.device, deadline: float | None) -> tuple[dict[str, float], bool]:
    started = time.monotonic()
    train_loss, seen, hit_deadline = train_one_epoch(net, train_batches.epoch(state.epoch), len(train_batches),
                                                     loss_fn, optimizer, device, deadline)
    train_s = time.monotonic() - started
    val, _ = validate(net, val_batches, loss_fn, device)
    seconds = time.monotonic() - started
    state.elapsed_s += seconds
    state.epoch += 1
    row = {"epoch": state.epoch, "train_loss": train_loss, "val_loss": val["loss"], "val_iou": val["iou"],
           "val_dice": val["dice"], "val_map": val["tgs_map"], "lr": optimizer.param_groups[0]["lr"],
           "seconds": seconds, "images_per_s": seen / max(train_s, 1e-9), "val_seconds": seconds - train_s}
    state.history.append(row)
    return row, hit_deadline


def _finish(config: TrainConfig, run_dir: Path, net: UNet, val_batches: BatchIterator, val_set: LabelledSet,
            preprocess: Preprocess, state: TrainState, device: torch.device, stop_reason: str) -> FitResult:
    """Reload the best weights, sweep the threshold on validation, write model.safetensors."""
    best = load_model(run_dir / "checkpoints" / "best.safetensors").net.to(device, memory_format=torch.channels_last)
    loss_fn = get_loss(config.loss)
    binary = config.model.num_classes == 1
    threshold: float | None = None
    val, probabilities = validate(best, val_batches, loss_fn, device, keep_probabilities=binary)
    if binary and probabilities is not None:
        threshold, table = sweep_threshold(probabilities, torch.from_numpy(val_set.masks), config.threshold_metric)
        write_table_csv(table, run_dir / "threshold_sweep.csv")
        val, _ = validate(best, val_batches, loss_fn, device, threshold=threshold)
    best_row = state.history[state.best_epoch - 1] if state.best_epoch else {}
    model_path = run_dir / "model.safetensors"
    record = _record(config, best_row) | {"threshold_metric": config.threshold_metric, "val_at_threshold": val,
                                          "epochs_done": state.epoch, "stop_reason": stop_reason}
    save_model(model_path, best.cpu(), preprocess, threshold=0.5 if threshold is None else threshold, training=record)
    speeds = [row["images_per_s"] for row in state.history]
    log.info("stopped after epoch %d: %s; best epoch %d%s", state.epoch, stop_reason, state.best_epoch,
             f"; threshold {threshold:.2f}" if threshold is not None else "")
    return FitResult(model_path, threshold, val, state.epoch, state.best_epoch,
                     sum(speeds) / len(speeds) if speeds else 0.0, stop_reason)


def _deadline(config: TrainConfig, state: TrainState) -> float | None:
    """Monotonic time by which this epoch's training must stop, leaving room for its validation."""
    if config.time_budget_min is None:
        return None
    remaining = config.time_budget_min * 60 - state.elapsed_s
    if state.history:  # keep the last epoch's validation time in reserve
        remaining -= state.history[-1]["val_seconds"]
    return time.monotonic() + remaining


def _mode(monitor: str) -> str:
    return "min" if monitor == "val_loss" else "max"


def _improved(monitor: str, value: float, best: float | None) -> bool:
    if best is None or math.isnan(best):  # the first epoch always becomes the best so far
        return True
    return value < best if _mode(monitor) == "min" else value > best


def _record(config: TrainConfig, row: dict[str, float]) -> dict[str, Any]:
    return {"config": to_dict(config), "best_epoch_metrics": row}


def _log_epoch(config: TrainConfig, row: dict[str, float]) -> None:
    log.info("epoch %d/%d  loss %.4f  val_loss %.4f  IoU %.4f  Dice %.4f  mAP %.4f  lr %.1e  %.1f img/s  %.0fs",
             row["epoch"], config.epochs, row["train_loss"], row["val_loss"], row["val_iou"], row["val_dice"],
             row["val_map"], row["lr"], row["images_per_s"], row["seconds"])


def write_metrics_csv(history: list[dict[str, float]], path: Path) -> None:
    """metrics.csv: one row per epoch, columns METRICS_COLUMNS."""
    write_table_csv([{k: row[k] for k in METRICS_COLUMNS} for row in history], path)


def write_table_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """A list of same-keyed dicts as CSV, written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())
