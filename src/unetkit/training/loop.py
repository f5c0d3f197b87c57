"""The training loop: `fit` is a short sequence of small steps, the seed kernel's recipe by default.

Adam, cross-entropy, random horizontal flips, validation every epoch, reduce-on-plateau
(factor 0.1, patience 5, min lr 1e-5) and early stopping (patience 10) on the monitored
value, best and last checkpoints, then the decision rule (threshold, small-component
removal, empty-mask rule) tuned on validation and stored in the model file. A time budget
ends training cleanly, mid-epoch if need be. Options (losses, optimisers, schedules, EMA,
mixed precision, compile) are assembled once by `build_parts`.

Under torchrun the same loop runs on every rank with DistributedDataParallel: each rank
trains on its share of every global batch (data/loader.py), validates its share of the
validation set, and the figures are summed over the ranks, so every rank takes the same
decisions (plateau, early stopping, best epoch, time budget). Rank 0 alone writes files and
tunes the decision rule at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from unetkit import distributed
from unetkit.config import TrainConfig, to_dict
from unetkit.data.dataset import LabelledSet
from unetkit.data.loader import Batch, BatchIterator, default_workers
from unetkit.data.masks import class_table
from unetkit.data.preprocess import Preprocess
from unetkit.errors import UserError
from unetkit.export.model_file import SavedModel, load_model, save_model
from unetkit.fileio import write_csv
from unetkit.inference.labelled import predict_labelled, stacked
from unetkit.inference.predictor import Predictor
from unetkit.metrics import MetricAccumulator
from unetkit.models.base import SegmentationNet
from unetkit.models.registry import build_model
from unetkit.outputs import as_logits, foreground, is_binary, uses_sigmoid
from unetkit.runtime import has_bf16, log, progress, resolve_device
from unetkit.training.checkpoint import Checkpoint, TrainState, rng_state, save_checkpoint
from unetkit.training.losses import LossFn, get_loss
from unetkit.training.observe import EpochObserver
from unetkit.training.schedule import StepSchedule, make_optimizer, make_plateau
from unetkit.training.threshold import tune_decision, warn_if_blind

PROGRESS_EVERY = 10  # steps between progress-bar loss updates and torchrun's deadline checks (each waits for the GPU)
METRICS_COLUMNS = ("epoch", "train_loss", "val_loss", "val_iou", "val_dice", "val_map", "lr", "seconds", "images_per_s")


@dataclass
class TrainResult:
    """A finished training run (for K folds: the ensemble and its out-of-fold figures)."""

    run_dir: Path
    model_path: Path
    threshold: float | None  # chosen on validation; None for multi-class models
    val_metrics: dict[str, Any]  # validation (or out-of-fold) figures at the chosen decision rule, best weights
    epochs_done: int
    best_epoch: int
    images_per_s: float
    stop_reason: str
    n_train: int = 0
    n_val: int = 0
    postprocess: dict[str, float] = field(default_factory=dict)
    binary: bool = True  # one foreground class: the TGS figures (mAP) mean something


@dataclass
class Parts:
    """Everything a training step touches, built once from the config."""

    config: TrainConfig
    net: SegmentationNet  # the weights being trained (never wrapped: its state_dict keys stay clean)
    forward: torch.nn.Module  # net, wrapped in DistributedDataParallel under torchrun, optionally compiled
    ema: AveragedModel | None
    optimizer: torch.optim.Optimizer
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau
    schedule: StepSchedule
    loss_fn: LossFn
    device: torch.device
    autocast: Any  # a context-manager factory
    scaler: torch.amp.GradScaler | None

    @property
    def evaluated(self) -> torch.nn.Module:
        """The weights that are validated and saved: the EMA when enabled."""
        return self.ema.module if self.ema is not None else self.net

    def extras(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.ema is not None:
            out["ema"] = self.ema.state_dict()
        if self.scaler is not None:
            out["scaler"] = self.scaler.state_dict()
        return out


def build_parts(config: TrainConfig, steps_per_epoch: int, resume: Checkpoint | None,
                class_weights: tuple[float, ...] | None) -> Parts:
    """Network, optimiser, schedules, loss, EMA and precision settings for `config`."""
    device = resolve_device(config.runtime.device)
    torch.manual_seed(config.seed)
    if config.runtime.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    # channels_last: 10-25% faster convolutions on CPU (measured, 2 cores) and the layout tensor cores want.
    net = (resume.net if resume else build_model(config.model)).to(device, memory_format=torch.channels_last)
    if config.runtime.sync_batchnorm and distributed.launched():
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    if distributed.rank():  # same initial weights (DDP broadcasts rank 0's anyway), different dropout draws
        torch.manual_seed(config.seed + distributed.rank())
    optimizer = make_optimizer(net.parameters(), config)
    plateau = make_plateau(optimizer, config)
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(config.optim.ema_decay), use_buffers=True) \
        if config.optim.ema_decay else None
    amp_dtype = _amp_dtype(config.runtime.amp, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    if resume:
        optimizer.load_state_dict(resume.optimizer)
        plateau.load_state_dict(resume.scheduler)
        fresh = make_plateau(optimizer, config)  # settings come from the (possibly changed) config, counters stay
        plateau.patience, plateau.factor, plateau.min_lrs = fresh.patience, fresh.factor, fresh.min_lrs
        if ema is not None and "ema" in resume.extras:
            ema.load_state_dict(resume.extras["ema"])
        if scaler is not None and "scaler" in resume.extras:
            scaler.load_state_dict(resume.extras["scaler"])
        resume.restore_rng(distributed.rank(), config.seed, device)
    options = dataclasses.replace(config.loss, class_weights=class_weights)
    autocast = partial(torch.autocast, device_type=device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext
    forward: torch.nn.Module = net
    if distributed.launched():
        forward = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    return Parts(config, net, torch.compile(forward) if config.runtime.compile else forward, ema, optimizer, plateau,
                 StepSchedule(config, steps_per_epoch),
                 partial(get_loss(config.loss.name), options=options, ignore_index=config.data.ignore_index), device,
                 autocast, scaler)


def _amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU has it, else fp16 (with a grad scaler); CPUs train in fp32."""
    if mode == "off" or device.type != "cuda":
        return None
    if mode == "fp16" or (mode == "auto" and not has_bf16(device)):
        return torch.float16
    return torch.bfloat16


def fit(config: TrainConfig, run_dir: Path, train_set: LabelledSet, val_set: LabelledSet, preprocess: Preprocess,
        resume: Checkpoint | None = None, class_weights: tuple[float, ...] | None = None,
        augment: Any = None) -> TrainResult:
    """Train per `config`, writing checkpoints, metrics.csv and curves.png into `run_dir` (rank 0).

    Under torchrun every rank calls this and gets rank 0's result.
    """
    rank, world_size = distributed.rank(), distributed.world_size()
    workers = config.runtime.loader_workers
    if workers is None:
        workers = default_workers(resolve_device(config.runtime.device).type)
    train_batches = BatchIterator(train_set, preprocess, config.batch_size, shuffle=True, augment=augment,
                                  seed=config.seed, rank=rank, world_size=world_size, workers=workers)
    val_share = val_set if world_size == 1 else val_set.subset(np.arange(rank, len(val_set), world_size))
    parts = build_parts(config, len(train_batches), resume, class_weights)
    state = resume.state if resume else TrainState()
    if resume:
        log.info("resuming %s after epoch %d", run_dir, state.epoch)
    observer = EpochObserver(run_dir, config, val_set, preprocess) if distributed.is_main() else None
    stop_reason = "epochs"
    while state.epoch < config.epochs:
        if config.early_stopping_patience and state.stale_epochs >= config.early_stopping_patience:
            stop_reason = f"early stopping (no {config.monitor} improvement in {state.stale_epochs} epochs)"
            break
        deadline = _deadline(config, state)
        if deadline is not None and distributed.any_rank(deadline <= time.monotonic(), parts.device):
            stop_reason = "time budget"
            break
        row, hit_deadline = _run_epoch(parts, state, train_batches, val_share, preprocess, deadline)
        _after_epoch(config, run_dir, parts, preprocess, state, row, observer)
        if hit_deadline:
            stop_reason = "time budget"
            break
    result = None
    if observer is not None:  # rank 0
        observer.close()
        result = _finish(config, run_dir, parts, val_set, preprocess, state, stop_reason)
        result.n_train, result.n_val = len(train_set), len(val_set)
    return distributed.from_main(result)


def train_one_epoch(parts: Parts, batches: BatchIterator, epoch: int, state: TrainState,
                    deadline: float | None) -> tuple[float, int, bool]:
    """One pass over the training batches: (mean loss, images seen, whether the deadline cut it short).

    Under torchrun the loss and the count are over all ranks, and the ranks stop together.
    """
    parts.net.train()
    # The loss stays on the device: reading it every step would make the CPU wait for the GPU,
    # and the next batch is prepared while the GPU still works on this one.
    loss_sum, seen, started, stopped = torch.zeros((), dtype=torch.float64, device=parts.device), 0, time.monotonic(), False
    clock = state.elapsed_s  # training time as the schedule sees it (the same on every rank)
    bar = progress(batches.epoch(epoch), total=len(batches), desc=f"epoch {epoch + 1}", unit="batch", leave=False)
    for index, batch in enumerate(bar):
        parts.schedule.apply(parts.optimizer, state.steps, clock)
        loss = train_step(parts, batch)
        # On the CPU every step is checked (reading the loss costs nothing); on a GPU every few,
        # since reading it waits for the device.
        if parts.device.type == "cpu" or index % PROGRESS_EVERY == 0:
            _check_finite(loss, epoch, index)
        state.steps += 1
        counted = len(batch.images) if batch.loss_scale else 0
        loss_sum += loss * counted
        seen += counted
        if index % PROGRESS_EVERY == 0 and not bar.disable:
            bar.set_postfix(loss=f"{float(loss_sum) / max(seen, 1):.4f}",
                                 lr=f"{parts.optimizer.param_groups[0]['lr']:.1e}")
        clock, stopped = _agreed_clock(clock, state.elapsed_s + time.monotonic() - started, deadline, index,
                                       parts.device)
        if stopped:
            break
    bar.close()
    loss_total, seen = distributed.sum_across([float(loss_sum), float(seen)], parts.device)
    return loss_total / max(seen, 1), int(seen), stopped


def _check_finite(loss: torch.Tensor, epoch: int, index: int) -> None:
    """Stop on a NaN or infinite loss: every later step would only spread it into the weights."""
    value = float(loss)
    if not math.isfinite(value):
        raise UserError(f"epoch {epoch + 1}, batch {index + 1}: the training loss is {value}; lower optim.lr "
                        "(--lr), set optim.grad_clip, or check the images for extreme values")


def _agreed_clock(clock: float, elapsed_s: float, deadline: float | None, index: int,
                  device: torch.device) -> tuple[float, bool]:
    """(training time for the schedule, whether to stop for the time budget) after a step.

    One process: its own clock. Under torchrun the ranks' clocks differ by milliseconds, and a
    time-driven learning rate must not (their weights would drift apart), so every few steps
    they agree on the mean of their clocks and on stopping; between agreements nothing changes.
    Agreeing is a collective that waits for the GPU, hence not every step.
    """
    if not distributed.launched():
        return elapsed_s, deadline is not None and time.monotonic() >= deadline
    if index % PROGRESS_EVERY:
        return clock, False
    total, late = distributed.sum_across([elapsed_s, float(deadline is not None and time.monotonic() >= deadline)],
                                         device)
    return total / distributed.world_size(), late > 0


def train_step(parts: Parts, batch: Batch) -> torch.Tensor:
    """Forward, backward, (clip), optimiser step, EMA update; returns the batch loss (a 0-d tensor on
    the device, not read back, so the step does not wait for the GPU)."""
    if parts.device.type == "cuda":  # page-locked host memory makes the copies below asynchronous
        batch = batch._replace(images=batch.images.pin_memory(), masks=batch.masks.pin_memory(),
                               weights=batch.weights.pin_memory() if batch.weights is not None else None)
    images = batch.images.to(parts.device, non_blocking=True, memory_format=torch.channels_last)
    masks = batch.masks.to(parts.device, non_blocking=True)
    weights = batch.weights.to(parts.device, non_blocking=True) if batch.weights is not None else None
    parts.optimizer.zero_grad(set_to_none=True)
    with parts.autocast():
        logits = parts.forward(images)
    loss = parts.loss_fn(logits.float(), masks, weights)
    scaled = loss * batch.loss_scale if batch.loss_scale != 1.0 else loss  # DDP averages the ranks' gradients
    if parts.scaler is not None:
        parts.scaler.scale(scaled).backward()
        parts.scaler.unscale_(parts.optimizer)
    else:
        scaled.backward()
    if parts.config.optim.grad_clip:
        torch.nn.utils.clip_grad_norm_(parts.net.parameters(), parts.config.optim.grad_clip)
    if parts.scaler is not None:
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        parts.optimizer.step()
    if parts.ema is not None:
        parts.ema.update_parameters(parts.net)
    return loss.detach()


@torch.no_grad()
def validate(net: SegmentationNet, data: LabelledSet, preprocess: Preprocess, loss_fn: LossFn, device: torch.device,
             batch_size: int, *, threshold: float = 0.5, keep_probabilities: bool = False,
             ignore_index: int | None = None, across_ranks: bool = False) -> tuple[dict[str, Any], torch.Tensor | None]:
    """Loss and metrics of `net` on `data`, predicted as `unetkit predict` would (inference/labelled.py);
    optionally the foreground probabilities as uint8 (N, H, W), (N * K, H, W) for multi-label models.

    The loss is taken per batch of `batch_size` on the probabilities, clamped at 1e-7 as Keras does.
    `across_ranks`: each rank holds a share of the images; the figures are over all shares.
    """
    config = net.config
    engine = Predictor(SavedModel(net, preprocess, threshold), batch_size=batch_size, torch_device=device)
    accumulator = MetricAccumulator(config.num_classes, ignore_index=ignore_index, multilabel=config.multilabel)
    loss_sum, seen, kept = 0.0, 0, []
    predictions = predict_labelled(engine, ((i, data.images[i], data.masks[i]) for i in range(len(data))),
                                   postprocess=False)
    for chunk in _chunks(predictions, batch_size):
        _, probabilities, masks, truths = stacked(chunk)
        target = torch.from_numpy(truths).long()
        loss_sum += float(loss_fn(as_logits(torch.from_numpy(probabilities), config), target)) * len(chunk)
        seen += len(chunk)
        accumulator.update(torch.from_numpy(masks), target)
        if keep_probabilities:
            kept.append((torch.from_numpy(foreground(probabilities, config)) * 255).round().to(torch.uint8))
    if across_ranks and distributed.launched():
        accumulator = MetricAccumulator.merged(distributed.all_gather(accumulator))
        loss_sum, seen = distributed.sum_across([loss_sum, float(seen)], device)
    summary = accumulator.summary() | {"loss": loss_sum / max(seen, 1)}
    return summary, (torch.cat(kept) if keep_probabilities else None)


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _run_epoch(parts: Parts, state: TrainState, train_batches: BatchIterator, val_share: LabelledSet,
               preprocess: Preprocess, deadline: float | None) -> tuple[dict[str, float], bool]:
    started = time.monotonic()
    train_loss, seen, hit_deadline = train_one_epoch(parts, train_batches, state.epoch, state, deadline)
    train_s = time.monotonic() - started
    val, _ = validate(parts.evaluated, val_share, preprocess, parts.loss_fn, parts.device, parts.config.batch_size,
                      ignore_index=parts.config.data.ignore_index, across_ranks=True)
    parts.net.train()
    seconds = time.monotonic() - started
    state.elapsed_s += seconds
    state.epoch += 1
    row = {"epoch": state.epoch, "train_loss": train_loss, "val_loss": val["loss"], "val_iou": val["iou"],
           "val_dice": val["dice"], "val_map": val["tgs_map"], "lr": parts.optimizer.param_groups[0]["lr"],
           "seconds": seconds, "images_per_s": seen / max(train_s, 1e-9), "val_seconds": seconds - train_s}
    state.history.append(row)
    return row, hit_deadline


def _after_epoch(config: TrainConfig, run_dir: Path, parts: Parts, preprocess: Preprocess, state: TrainState,
                 row: dict[str, float], observer: EpochObserver | None) -> None:
    """Plateau step, best/last checkpoints, metrics.csv, curves and samples; the budget counts this too.

    Every rank steps the schedules; rank 0, the one with an observer, writes the files.
    """
    started = time.monotonic()
    if not parts.schedule.active:
        parts.plateau.step(row[config.monitor])
    checkpoints = run_dir / "checkpoints"
    improved = _improved(config.monitor, row[config.monitor], state.best_value)
    if improved:
        state.best_value, state.best_epoch, state.stale_epochs = row[config.monitor], state.epoch, 0
    else:
        state.stale_epochs += 1
    rank_rngs = distributed.all_gather(rng_state(parts.device))  # each rank resumes its own dropout draws
    if observer is not None:
        if improved:
            save_model(checkpoints / "best.safetensors", parts.evaluated, preprocess, training=_record(config, row))
        write_metrics_csv(state.history, run_dir / "metrics.csv")
        observer.epoch_done(state.history, parts.evaluated, parts.device)
    state.elapsed_s += time.monotonic() - started
    if observer is not None:
        save_checkpoint(checkpoints / "last.safetensors", config, parts.net, preprocess, parts.optimizer,
                        parts.plateau, state, parts.extras(), rank_rngs[1:])
        _log_epoch(config, row)
    # Rank 0's time (it also wrote the files) for every rank: budget and schedule stay in step, and
    # no rank runs ahead of the checkpoint it would resume from.
    state.elapsed_s = distributed.from_main(state.elapsed_s)


def _finish(config: TrainConfig, run_dir: Path, parts: Parts, val_set: LabelledSet, preprocess: Preprocess,
            state: TrainState, stop_reason: str) -> TrainResult:
    """Reload the best weights, tune the decision rule on validation, write model.safetensors."""
    device = parts.device
    best = load_model(run_dir / "checkpoints" / "best.safetensors").net.to(device, memory_format=torch.channels_last)
    binary = uses_sigmoid(config.model)
    threshold: float | None = None
    postprocess: dict[str, float] = {}
    ignore_index = config.data.ignore_index
    val, probabilities = validate(best, val_set, preprocess, parts.loss_fn, device, config.batch_size,
                                  keep_probabilities=binary, ignore_index=ignore_index)
    if binary and probabilities is not None:
        targets = torch.from_numpy(val_set.masks)
        if targets.dim() == 4:  # multi-label: one map per (image, label), like the probabilities
            targets = targets.permute(0, 3, 1, 2).flatten(0, 1)
        decision, table = tune_decision(probabilities, targets, config.decision.threshold_metric,
                                        tune_postprocess=config.decision.tune_postprocess and not config.model.multilabel,
                                        ignore_index=ignore_index)
        threshold, postprocess = decision.threshold, decision.postprocess
        warn_if_blind(decision, targets, ignore_index, "validation")
        write_csv(table, run_dir / "threshold_sweep.csv")
        val = decision.metrics
        if config.model.multilabel:  # per-label figures, as during training
            val, _ = validate(best, val_set, preprocess, parts.loss_fn, device, config.batch_size, threshold=threshold)
    best_row = state.history[state.best_epoch - 1] if state.best_epoch else {}
    model_path = run_dir / "model.safetensors"
    record = _record(config, best_row) | {"threshold_metric": config.decision.threshold_metric, "val_at_threshold": val,
                                          "epochs_done": state.epoch, "stop_reason": stop_reason}
    save_model(model_path, best.cpu(), preprocess, threshold=0.5 if threshold is None else threshold,
               postprocess=postprocess, training=record)
    speeds = [row["images_per_s"] for row in state.history]
    rule = f"; threshold {threshold:.2f}" if threshold is not None else ""
    rule += "".join(f", {k} {v} px" for k, v in postprocess.items() if v)
    log.info("stopped after epoch %d: %s; best epoch %d%s", state.epoch, stop_reason, state.best_epoch, rule)
    return TrainResult(run_dir, model_path, threshold, val, state.epoch, state.best_epoch,
                       sum(speeds) / len(speeds) if speeds else 0.0, stop_reason, postprocess=postprocess,
                       binary=is_binary(config.model))


def _deadline(config: TrainConfig, state: TrainState) -> float | None:
    """Monotonic time by which this epoch's training must stop, leaving room for its validation."""
    if config.time_budget_min is None:
        return None
    remaining = config.time_budget_min * 60 - state.elapsed_s
    if state.history:  # keep the last epoch's validation time in reserve
        remaining -= state.history[-1]["val_seconds"]
    return time.monotonic() + remaining


def _improved(monitor: str, value: float, best: float | None) -> bool:
    if best is None or math.isnan(best):  # the first epoch always becomes the best so far
        return True
    return value < best if monitor == "val_loss" else value > best


def _record(config: TrainConfig, row: dict[str, float]) -> dict[str, Any]:
    return {"config": to_dict(config), "best_epoch_metrics": row,
            "classes": class_table(config.data.data_dir, config.model.num_classes, config.model.multilabel)}


def _log_epoch(config: TrainConfig, row: dict[str, float]) -> None:
    tgs = f"  mAP {row['val_map']:.4f}" if is_binary(config.model) else ""  # the TGS metric: one class only
    log.info("epoch %d/%d  loss %.4f  val_loss %.4f  IoU %.4f  Dice %.4f%s  lr %.1e  %.1f img/s  %.0fs",
             row["epoch"], config.epochs, row["train_loss"], row["val_loss"], row["val_iou"], row["val_dice"], tgs,
             row["lr"], row["images_per_s"], row["seconds"])


def write_metrics_csv(history: list[dict[str, float]], path: Path) -> None:
    """metrics.csv: one row per epoch, columns METRICS_COLUMNS."""
    write_csv([{k: row[k] for k in METRICS_COLUMNS} for row in history], path)
