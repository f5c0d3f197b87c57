"""How every training run ends: one function for a single split, SGDR snapshots, SWA and K folds.

The kinds of run differ only in what the model file holds (the best checkpoint, the snapshots'
ensemble, the SWA average, the folds' ensemble) and in which images score it: the validation set,
predicted by the final net, or out of fold, each fold's held-out images predicted by the member
that never saw them. `finish` takes both, predicts them once, tunes the decision rule once on those
probabilities (binary and multi-label models), and writes model.safetensors once, with the record
the run report reads. `final_net` is a single split's choice of weights (training/averaging.py
makes the averages).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit.config import TrainConfig, to_dict
from unetkit.data.dataset import LabelledSet
from unetkit.data.loader import BatchIterator
from unetkit.data.masks import class_table
from unetkit.data.pairing import DataSource
from unetkit.data.preprocess import Preprocess
from unetkit.export.model_file import load_model, save_ensemble, save_model
from unetkit.inference.engine import planned_tile
from unetkit.measures import parse_measures
from unetkit.metrics import MetricAccumulator
from unetkit.models.base import SegmentationNet
from unetkit.models.ensemble import Ensemble
from unetkit.outputs import uses_sigmoid
from unetkit.runtime import log
from unetkit.training.averaging import ensemble, swa_model
from unetkit.training.checkpoint import TrainState
from unetkit.training.diagnosis import run_warnings
from unetkit.training.losses import LossFn, get_loss
from unetkit.training.parts import Parts
from unetkit.training.threshold import Maps, tune_on_validation
from unetkit.training.validation import target_maps, validate

Net = SegmentationNet | Ensemble


@dataclass
class Held:
    """Images the final model is scored on and the net that predicts them: the final net itself, or for
    out-of-fold scores the fold's member, which never saw them."""

    net: Net
    data: LabelledSet
    regions: list[np.ndarray] | None = None  # per image, the (H, W) pixels the figures count (data.fov_dir)


@dataclass
class Finished:
    """What `finish` wrote and chose."""

    model_path: Path
    threshold: float | None  # None for multi-class models
    figures: dict[str, Any]  # on the held-out images, at the decision rule
    postprocess: dict[str, float]
    warnings: list[str]


def val_measures(config: TrainConfig) -> tuple[str, ...]:
    """The extra validation figures of config.val_metrics (none when empty)."""
    return parse_measures(config.val_metrics, "config field 'val_metrics'") if config.val_metrics else ()


def run_record(config: TrainConfig) -> dict[str, Any]:
    """What every model file a run writes records about it: its config and its classes."""
    return {"config": to_dict(config),
            "classes": class_table(DataSource.from_fields(config.data), config.model.num_classes, config.model.multilabel)}


def final_net(run_dir: Path, parts: Parts, train_batches: BatchIterator, state: TrainState) -> tuple[Net, str]:
    """A single split's final net and what it is: the SGDR snapshots' ensemble, the SWA average, or the
    best checkpoint."""
    device = parts.device
    if parts.snapshots is not None:
        return ensemble(parts.snapshots.members(state.snapshots, device)), f"{state.snapshots} SGDR snapshots"
    if parts.swa is not None:
        averaged = swa_model(parts.swa, train_batches, device)
        if averaged is not None:
            return averaged, f"SWA of {int(parts.swa.n_averaged)} epochs"
        log.info("SWA averaged nothing (the run ended before optim.swa_start); the model is the best epoch's")
    best = load_model(run_dir / "checkpoints" / "best.safetensors").net
    return best.to(device, memory_format=torch.channels_last), f"best epoch {state.best_epoch}"  # type: ignore[return-value]


def finish(config: TrainConfig, run_dir: Path, net: Net, held: list[Held], preprocess: Preprocess,
           device: torch.device, *, made_of: str, record: dict[str, Any], loss_fn: LossFn | None = None,
           history: list[dict[str, float]] | None = None) -> Finished:
    """Score `held`, tune the decision rule on it (threshold_sweep.csv), write run_dir/model.safetensors
    holding `net` with that rule and `record` (what the kind of run adds: epochs, folds, the plan)
    completed by `run_record`, the figures and the warnings.

    One `held` set is validation; several are out of fold (`figures` over all their images). The
    held-out images are predicted once; per-label figures (multi-label) and val_metrics take a second
    pass at the tuned threshold. `loss_fn`: the run's validation loss (built from config.loss if None).
    """
    if loss_fn is None:
        loss_fn = partial(get_loss(config.loss.name), options=config.loss, ignore_index=config.data.ignore_index)
    out_of_fold = len(held) > 1
    names = () if out_of_fold else val_measures(config)  # val_metrics are figures of one fold at a time
    tuned = uses_sigmoid(config.model)
    record = run_record(config) | record | {"weights": made_of}
    score = partial(_score, config, held, preprocess, loss_fn, device, planned_tile(record))
    figures, probabilities, targets = score(keep=tuned, measures=() if tuned else names)
    threshold: float | None = None
    postprocess: dict[str, float] = {}
    if tuned:
        regions = None if held[0].regions is None else [r for h in held for r in h.regions or []]
        figures, threshold, postprocess = tune_on_validation(
            config, run_dir, probabilities, targets, regions,  # type: ignore[arg-type]
            scored_on="out-of-fold predictions" if out_of_fold else "validation")
        if config.model.multilabel or names:  # per-label figures (as during training) and the chosen ones, at the rule
            at_rule, _, _ = score(threshold=threshold, measures=names)
            figures = at_rule if config.model.multilabel else figures | {k: v for k, v in at_rule.items() if k not in figures}
    warnings = run_warnings(config, history or [], figures, threshold, [c["name"] for c in record["classes"]])
    record |= {"threshold_metric": config.decision.threshold_metric,
               "out_of_fold" if out_of_fold else "val_at_threshold": figures, "warnings": warnings}
    model_path = run_dir / "model.safetensors"
    rule: dict[str, Any] = {"threshold": 0.5 if threshold is None else threshold, "postprocess": postprocess,
                            "training": record}
    if isinstance(net, Ensemble):
        save_ensemble(model_path, list(net.cpu().members), preprocess, **rule)  # type: ignore[arg-type]
    else:
        save_model(model_path, net.cpu(), preprocess, **rule)
    said = f"; threshold {threshold:.2f}" if threshold is not None else ""
    said += "".join(f", {k} {v} px" for k, v in postprocess.items() if v)
    log.info("model: %s%s; %s IoU %.4f  Dice %.4f  TGS mAP %.4f", made_of, said,
             "out of fold" if out_of_fold else "validation", figures.get("iou", float("nan")),
             figures.get("dice", float("nan")), figures.get("tgs_map", float("nan")))
    return Finished(model_path, threshold, figures, postprocess, warnings)


def _score(config: TrainConfig, held: list[Held], preprocess: Preprocess, loss_fn: LossFn, device: torch.device,
           tile: int, *, threshold: float = 0.5, keep: bool = False,
           measures: tuple[str, ...] = ()) -> tuple[dict[str, Any], Maps | None, Maps | None]:
    """Figures over all the held-out images, each set predicted by its own net; with `keep`, their foreground
    probabilities and truths, in one layout (validation.target_maps), for the sweep."""
    shared = None  # out of fold: the figures of every fold's images in one accumulator
    if len(held) > 1:
        shared = MetricAccumulator(config.model.num_classes, ignore_index=config.data.ignore_index,
                                   multilabel=config.model.multilabel)
    figures: dict[str, Any] = {}
    kept, truths = [], []
    for h in held:
        figures, probabilities = validate(h.net, h.data, preprocess, loss_fn, device, config.batch_size,
                                          threshold=threshold, keep_probabilities=keep,
                                          ignore_index=config.data.ignore_index, tile=tile, regions=h.regions,
                                          measures=measures, into=shared)
        if probabilities is not None:
            kept.append(probabilities)
            truths.append(target_maps(h.data))
    if shared is not None:
        figures.pop("loss")  # the last fold's alone: no out-of-fold figure
    return figures, _joined(kept), _joined(truths)


def _joined(maps: list[Maps]) -> Maps | None:
    """Several sets' maps as one: stacked when every set is, with one size, else a list of (H, W) maps."""
    if len(maps) <= 1:
        return maps[0] if maps else None
    if all(isinstance(m, torch.Tensor) for m in maps) and len({m.shape[1:] for m in maps}) == 1:  # type: ignore[union-attr]
        return torch.cat(maps)  # type: ignore[arg-type]
    return [m for block in maps for m in block]
