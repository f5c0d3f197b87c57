"""The training loop: `fit` is a short sequence of small steps, the seed kernel's recipe by default.

A time budget ends training cleanly, mid-epoch if need be. The TGS winners' options act here as the run progresses
(a share of the epochs, or of the time budget, as the schedule measures it): the second stage's loss from
`loss.second_at`, an SGDR snapshot at each cycle's end, SWA averages at epoch ends; training/finish.py chooses the
final model of them.

Under torchrun the same loop runs on every rank with DistributedDataParallel: each rank trains on its share of every
global batch (data/loader.py), validates its share of the validation set, and the figures are summed over the ranks,
so every rank takes the same decisions (plateau, early stopping, best epoch, time budget). Rank 0 alone writes files
and tunes the decision rule at the end.
"""

from __future__ import annotations

import math
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit import distributed
from unetkit.config import TrainConfig
from unetkit.data.dataset import LabelledSet
from unetkit.data.device_batches import DeviceSamples, device_nbytes
from unetkit.data.fov import regions_for
from unetkit.data.loader import Batches, ImageSamples, Samples, default_workers
from unetkit.data.patch_batches import PatchSamples
from unetkit.data.patch_set import PatchSet
from unetkit.data.preprocess import Preprocess
from unetkit.data.weights import border_weights
from unetkit.errors import UserError
from unetkit.export.model_file import save_model
from unetkit.fileio import write_csv
from unetkit.measures import extra_columns, monitor_minimizes
from unetkit.outputs import is_binary
from unetkit.runtime import log, progress
from unetkit.training.averaging import Snapshots, ema_floor, swa_update
from unetkit.training.checkpoint import Checkpoint, TrainState, rng_state, save_checkpoint
from unetkit.training.finish import Held, TrainResult, final_net, finish, run_record, val_measures
from unetkit.training.losses import BORDER_WEIGHTED
from unetkit.training.observe import EpochObserver
from unetkit.training.parts import Parts, build_parts
from unetkit.training.plan import Settings
from unetkit.training.step import enter_stage, stage_peak, train_step
from unetkit.training.validation import validate

PROGRESS_EVERY = 10  # steps between progress-bar loss updates and torchrun's deadline checks (each waits for the GPU)
METRICS_COLUMNS = ("epoch", "train_loss", "val_loss", "val_iou", "val_dice", "val_map", "lr", "seconds", "images_per_s")


def fit(config: TrainConfig, run_dir: Path, train_set: LabelledSet | PatchSet, val_set: LabelledSet,
        preprocess: Preprocess, device: torch.device, resume: Checkpoint | None = None,
        class_weights: tuple[float, ...] | None = None, augment: Any = None, *, settings: Settings) -> TrainResult:
    """Train per `config` and the plan's `settings` on `device` into `run_dir` (rank 0 writes). `val_set` is
    predicted whole, in tiles of the plan's predict_tile as `unetkit predict` will use them. Every torchrun rank
    gets rank 0's result."""
    rank, world_size = distributed.rank(), distributed.world_size()
    workers = default_workers(device.type) if config.runtime.loader_workers is None else config.runtime.loader_workers
    crop = (config.data.pad_to, config.data.crop) if config.data.size_policy == "pad_crop" else None
    # One batcher over one of three sample sources, each drawn from (seed, epoch, batch, rank) with `augment`.
    samples: Samples
    if settings.patch_size:  # the plan's patch mode: train_set is a PatchSet
        if config.runtime.device_batches == "on":
            raise UserError("runtime.device_batches: on does not support patch training yet (patches are read and "
                            "augmented by the CPU loader); use auto or off, or --patch-size 0 for whole images")
        border = partial(border_weights, w0=config.loss.border_w0, sigma=config.loss.border_sigma,
                         ignore_index=config.data.ignore_index)  # per patch, as drawn (whole images: the runner's)
        samples = PatchSamples(train_set, preprocess, settings.batch_size, patch_size=settings.patch_size,
                               foreground_share=settings.foreground_share, augment=augment, seed=config.seed,
                               patches_per_epoch=config.data.patches_per_epoch,
                               weight_map=border if config.loss.name in BORDER_WEIGHTED else None)
    elif _on_device(config, train_set, device):  # made in this thread: the device works asynchronously
        samples, workers = DeviceSamples(train_set, preprocess, shuffle=True, device=device, augment=augment,
                                         seed=config.seed, pad_crop=crop), 0
    else:
        samples = ImageSamples(train_set, preprocess, shuffle=True, augment=augment, seed=config.seed, pad_crop=crop)
    train_batches = Batches(samples, settings.batch_size, rank=rank, world_size=world_size, workers=workers)
    val_share = val_set if world_size == 1 else val_set.subset(np.arange(rank, len(val_set), world_size))
    val_regions = regions_for(val_set, config.data.fov_dir) if config.data.fov_dir else None
    share_regions = val_regions[rank::world_size] if val_regions is not None else None
    parts = build_parts(config, len(train_batches), resume, class_weights, device, monitor=settings.monitor)
    if config.schedule.snapshots:
        parts.snapshots = Snapshots(run_dir / "checkpoints", preprocess, write=distributed.is_main())
    state = resume.state if resume else TrainState()
    if resume:
        log.info("resuming %s after epoch %d", run_dir, state.epoch)
    observer = EpochObserver(run_dir, config, val_set, preprocess, settings.plan) if distributed.is_main() else None
    stop_reason = "epochs"
    while config.epochs is None or state.epoch < config.epochs:  # None: the time budget ends the run
        if config.early_stopping_patience and state.stale_epochs >= config.early_stopping_patience:
            stop_reason = f"early stopping (no {settings.monitor} improvement in {state.stale_epochs} epochs)"
            break
        deadline = _deadline(config, state)
        if deadline is not None and distributed.any_rank(deadline <= time.monotonic(), parts.device):
            stop_reason = "time budget"
            break
        row, hit_deadline = _run_epoch(parts, state, train_batches, val_share, preprocess, deadline, settings,
                                       share_regions)
        _after_epoch(config, settings.monitor, run_dir, parts, preprocess, state, row, observer)
        if state.epoch == 1 and config.time_budget_min and not hit_deadline:
            log.info("the run's length: epoch 1 took %.0f s here, so about %d epochs fit the %g-minute budget",
                     row["seconds"], config.time_budget_min * 60 // max(row["seconds"], 1e-9), config.time_budget_min)
        if hit_deadline:
            stop_reason = "time budget"
            break
    if parts.snapshots is not None and state.snapshots < config.schedule.cycles:  # stopped before the last cycle's end
        parts.snapshots.take(parts.evaluated, state)
    result = None
    if observer is not None:  # rank 0
        observer.close(state.history, parts.evaluated, parts.device)
        log.info("stopped after epoch %d: %s", state.epoch, stop_reason)
        net, made_of = final_net(run_dir, parts, train_batches, state)
        speeds = [row["images_per_s"] for row in state.history]
        result = finish(config, run_dir, net, [Held(net, val_set, val_regions)], preprocess, parts.device, settings,
                        made_of=made_of,
                        record={"best_epoch_metrics": state.history[state.best_epoch - 1] if state.best_epoch else {}},
                        ran={"epochs_done": state.epoch, "best_epoch": state.best_epoch, "stop_reason": stop_reason,
                             "images_per_s": sum(speeds) / len(speeds) if speeds else 0.0, "n_train": len(train_set),
                             "n_val": len(val_set)}, loss_fn=parts.loss_fn, history=state.history)
    return distributed.from_main(result)


def _on_device(config: TrainConfig, train_set: LabelledSet, device: torch.device) -> bool:
    """Whether the training set lives on the device and is cut and augmented there (data/device_batches.py):
    on a GPU the CPU cannot prepare batches fast enough; with `auto`, when a quarter of the
    free device memory holds the set."""
    choice = config.runtime.device_batches
    if choice == "off":
        return False
    on_gpu = device.type == "cuda"
    return choice == "on" or (on_gpu and device_nbytes(train_set) < torch.cuda.mem_get_info(device)[0] // 4)


def train_one_epoch(parts: Parts, batches: Batches, epoch: int, state: TrainState,
                    deadline: float | None) -> tuple[float, int, bool]:
    """One pass over the training batches: (mean loss, images seen, whether the deadline cut it short),
    over all ranks under torchrun, where the ranks stop together."""
    parts.net.train()
    # The loss stays on the device: reading it every step would make the CPU wait for the GPU,
    # and the next batch is prepared while the GPU still works on this one.
    loss_sum, seen, started, stopped = torch.zeros((), dtype=torch.float64, device=parts.device), 0, time.monotonic(), False
    clock = state.elapsed_s  # training time as the schedule sees it (the same on every rank)
    bar = progress(batches.epoch(epoch), total=len(batches), desc=f"epoch {epoch + 1}", unit="batch", leave=False)
    for index, batch in enumerate(bar):
        _before_step(parts, state, clock)
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
            bar.set_postfix(loss=f"{float(loss_sum) / max(seen, 1):.4f}",  # shown at the bar's next refresh
                            lr=f"{parts.optimizer.param_groups[0]['lr']:.1e}", refresh=False)
        clock, stopped = _agreed_clock(clock, state.elapsed_s + time.monotonic() - started, deadline, index,
                                       parts.device)
        if stopped:
            break
    bar.close()
    loss_total, seen = distributed.sum_across([float(loss_sum), float(seen)], parts.device)
    return loss_total / max(seen, 1), int(seen), stopped


def _before_step(parts: Parts, state: TrainState, clock: float) -> None:
    """What the run's progress decides before a step: the stage, the learning rate, SGDR snapshots."""
    done = parts.schedule.progress(state.steps, clock)
    if parts.ema_floor is not None and parts.schedule.active:  # a plateau schedule's run has no planned length
        parts.ema_floor.fill_(ema_floor(state.steps, done))
    enter_stage(parts, state, done)
    parts.schedule.apply(parts.optimizer, state.steps, clock, stage_peak(parts))
    if parts.snapshots is not None:
        while state.snapshots < parts.schedule.cycles_done(done):  # the weights now end a cycle
            parts.snapshots.take(parts.evaluated, state)


def _check_finite(loss: torch.Tensor, epoch: int, index: int) -> None:
    """Stop on a NaN or infinite loss: every later step would only spread it into the weights."""
    value = float(loss)
    if not math.isfinite(value):
        raise UserError(f"epoch {epoch + 1}, batch {index + 1}: the training loss is {value}; lower optim.lr "
                        "(--lr), set optim.grad_clip, or check the images for extreme values")


def _agreed_clock(clock: float, elapsed_s: float, deadline: float | None, index: int,
                  device: torch.device) -> tuple[float, bool]:
    """(training time for the schedule, whether to stop for the time budget) after a step. One process: its own
    clock. Under torchrun the ranks' clocks differ by milliseconds, and a time-driven learning rate must not (their
    weights would drift apart), so every few steps they agree on the mean of their clocks and on stopping; between
    agreements nothing changes. Agreeing is a collective that waits for the GPU, hence not every step."""
    if not distributed.launched():
        return elapsed_s, deadline is not None and time.monotonic() >= deadline
    if index % PROGRESS_EVERY:
        return clock, False
    total, late = distributed.sum_across([elapsed_s, float(deadline is not None and time.monotonic() >= deadline)],
                                         device)
    return total / distributed.world_size(), late > 0


def _run_epoch(parts: Parts, state: TrainState, train_batches: Batches, val_share: LabelledSet, preprocess: Preprocess,
               deadline: float | None, settings: Settings,
               regions: list[np.ndarray] | None) -> tuple[dict[str, float], bool]:
    started = time.monotonic()
    train_loss, seen, hit_deadline = train_one_epoch(parts, train_batches, state.epoch, state, deadline)
    train_s, names = time.monotonic() - started, val_measures(parts.config)
    val, _ = validate(parts.evaluated, val_share, preprocess, parts.loss_fn, parts.device, settings.batch_size,
                      ignore_index=parts.config.data.ignore_index, across_ranks=True, tile=settings.plan.predict_tile,
                      regions=regions,
                      measures=names)
    parts.net.train()
    seconds = time.monotonic() - started
    state.elapsed_s += seconds
    state.epoch += 1
    row = {"epoch": state.epoch, "train_loss": train_loss, "val_loss": val["loss"], "val_iou": val["iou"],
           "val_dice": val["dice"], "val_map": val["tgs_map"], "lr": parts.optimizer.param_groups[0]["lr"],
           "seconds": seconds, "images_per_s": seen / max(train_s, 1e-9), "val_seconds": seconds - train_s}
    row |= {column: val[column.removeprefix("val_")] for column in extra_columns(names)}
    state.history.append(row)
    return row, hit_deadline


def _after_epoch(config: TrainConfig, monitor: str, run_dir: Path, parts: Parts, preprocess: Preprocess,
                 state: TrainState, row: dict[str, float], observer: EpochObserver | None) -> None:
    """Plateau step, best/last checkpoints, metrics.csv, curves and samples; the budget counts this too.
    Every rank steps the schedules; rank 0, the one with an observer, writes the files."""
    started = time.monotonic()
    if not parts.schedule.active:
        parts.plateau.step(row[monitor])
    swa_update(parts.swa, parts.net, parts.schedule.progress(state.steps, state.elapsed_s), config.optim.swa_start)
    improved = _improved(monitor, row[monitor], state.best_value)
    if improved:
        state.best_value, state.best_epoch, state.stale_epochs = row[monitor], state.epoch, 0
    else:
        state.stale_epochs += 1
    rank_rngs = distributed.all_gather(rng_state(parts.device))  # each rank resumes its own dropout draws
    if observer is not None:
        if improved:
            save_model(run_dir / "checkpoints" / "best.safetensors", parts.evaluated, preprocess,
                       training=run_record(config) | {"best_epoch_metrics": row})
        write_csv(rows := _csv_rows(state.history), run_dir / "metrics.csv")
        observer.epoch_done(state.history, parts.evaluated, parts.device)
        observer.track(rows[-1], state.epoch)
    state.elapsed_s += time.monotonic() - started
    if observer is not None:
        save_checkpoint(run_dir / "checkpoints" / "last.safetensors", config, parts.net, preprocess, parts.optimizer,
                        parts.plateau, state, parts.extras(), rank_rngs[1:])
        _log_epoch(config, row, state.elapsed_s)
    # Rank 0's time (it also wrote the files) for every rank: budget and schedule stay in step, and
    # no rank runs ahead of the checkpoint it would resume from.
    state.elapsed_s = distributed.from_main(state.elapsed_s)


def _deadline(config: TrainConfig, state: TrainState) -> float | None:
    """Monotonic time by which this epoch's training must stop, leaving room for its validation."""
    if config.time_budget_min is None:
        return None
    reserve = state.history[-1]["val_seconds"] if state.history else 0.0  # the last epoch's validation time
    return time.monotonic() + (config.time_budget_min * 60 - state.elapsed_s - reserve)


def _improved(monitor: str, value: float, best: float | None) -> bool:
    first = best is None or math.isnan(best)  # the first epoch always becomes the best so far
    return first or (value < best if monitor_minimizes(monitor) else value > best)  # type: ignore[operator]


def _log_epoch(config: TrainConfig, row: dict[str, float], elapsed_s: float) -> None:
    """One line per epoch; a time-budget run counts minutes, not the epochs it will never reach."""
    tgs = f"  mAP {row['val_map']:.4f}" if is_binary(config.model) else ""  # the TGS metric: one class only
    where = (f"epoch {int(row['epoch'])} ({elapsed_s / 60:.1f} of {config.time_budget_min:g} min)"
             if config.time_budget_min else f"epoch {int(row['epoch'])}/{config.epochs}")
    log.info("%s  loss %.4f  val_loss %.4f  IoU %.4f  Dice %.4f%s  lr %.1e  %.1f img/s  %.0fs", where,
             row["train_loss"], row["val_loss"], row["val_iou"], row["val_dice"], tgs, row["lr"], row["images_per_s"],
             row["seconds"])


def _csv_rows(history: list[dict[str, float]]) -> list[dict[str, float]]:
    """metrics.csv's rows: columns METRICS_COLUMNS, then the val_metrics' val_NAME columns."""
    columns = METRICS_COLUMNS + tuple(dict.fromkeys(k for row in history for k in row if k.startswith("val_")
                                                    and k not in METRICS_COLUMNS and k != "val_seconds"))
    return [{k: row.get(k, math.nan) for k in columns} for row in history]
