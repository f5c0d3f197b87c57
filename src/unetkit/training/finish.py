"""How every training run ends: one function for a single split, SGDR snapshots, SWA and K folds.

The kinds of run differ only in what the model file holds (the best checkpoint, the snapshots' ensemble, the SWA
average, the folds' ensemble) and in which images score it: the validation set, predicted by the final net, or out
of fold, each fold's held-out images predicted by the member that never saw them. `finish` takes both, predicts them
once, tunes the decision rule once on those probabilities (binary and multi-label models) and writes
model.safetensors once, with the record the run report reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit.config import TrainConfig, to_dict
from unetkit.data.dataset import LabelledSet
from unetkit.data.loader import Batches
from unetkit.data.masks import class_table
from unetkit.data.pairing import DataSource
from unetkit.data.preprocess import Preprocess
from unetkit.export.model_file import load_model, save_ensemble, save_model
from unetkit.measures import parse_measures
from unetkit.metrics import MetricAccumulator
from unetkit.models.base import SegmentationNet
from unetkit.models.ensemble import Ensemble
from unetkit.outputs import is_binary, uses_sigmoid
from unetkit.runtime import log
from unetkit.training.averaging import swa_model
from unetkit.training.checkpoint import TrainState
from unetkit.training.losses import LossFn, get_loss
from unetkit.training.parts import Parts
from unetkit.training.plan import Settings
from unetkit.training.threshold import THRESHOLDS, Maps, tune_on_validation
from unetkit.training.validation import target_maps, validate

Net = SegmentationNet | Ensemble


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
    warnings: list[str] = field(default_factory=list)  # why the model may be useless (run_warnings)


@dataclass
class Held:
    """Images to score and the net that predicts them: the final net, or out of fold the member that never saw them."""

    net: Net
    data: LabelledSet
    regions: list[np.ndarray] | None = None  # per image, the (H, W) pixels the figures count (data.fov_dir)


def val_measures(config: TrainConfig) -> tuple[str, ...]:
    """The extra validation figures of config.val_metrics (none when empty)."""
    return parse_measures(config.val_metrics, "config field 'val_metrics'") if config.val_metrics else ()


def run_record(config: TrainConfig) -> dict[str, Any]:
    """What every model file a run writes records about it: its config and its classes."""
    return {"config": to_dict(config),
            "classes": class_table(DataSource.from_fields(config.data), config.model.num_classes, config.model.multilabel)}


def run_warnings(config: TrainConfig, history: list[dict[str, float]], val: dict[str, Any],
                 threshold: float | None, class_names: list[str] | None = None,
                 balance_classes: str = "none") -> list[str]:
    """What a finished run says about itself when its model is clearly not usable: it can end with exit 0 and
    a model that never predicts foreground, a class it never learnt, or a decision threshold pinned to the edge
    of the sweep. Each warning names what is wrong, the likely cause and a command to try; `unetkit.train` logs
    them as the run's last lines, and the model file's record keeps them for the top of the run report.
    `balance_classes`: the class weights the run trained with (the plan's choice)."""
    warnings: list[str] = []
    stronger = "--recipe best" if config.recipe == "seed" else "a longer --time-budget"
    if history and all(float(row.get("val_iou", 0.0)) == 0.0 for row in history):
        warnings.append(f"validation IoU was 0 in every one of the {len(history)} epoch(s): the model never predicted "
                        "the foreground it was shown. Likely causes: foreground too rare for the loss "
                        f"({config.loss.name}) or a run too short; try {stronger} (BCE + Dice), or "
                        "check that the masks mark the foreground (unetkit plan --data DIR)")
    names = class_names or []
    weighting = {"none": ("an unweighted loss", "--set loss.balance_classes=tempered, "),
                 "tempered": ("tempered class weights", "--set loss.balance_classes=inverse (the rare classes weighed "
                              "fully, at some cost to the common ones), ")}.get(balance_classes,
                                                                            ("the class weights", ""))
    for index, value in enumerate(val.get("class_iou") or []):
        if float(value) == 0.0:
            name = names[index] if index < len(names) else f"class {index}"
            warnings.append(f"{name} (class {index}) has IoU 0 on validation: the model never predicts it. Likely "
                            f"cause: it covers too few pixels for {weighting[0]}; try {weighting[1]}or a longer "
                            "--time-budget")
    if threshold is not None and threshold in (THRESHOLDS[0], THRESHOLDS[-1]):
        side = "lowest" if threshold == THRESHOLDS[0] else "highest"
        warnings.append(f"the decision threshold {threshold:.2f} is the {side} the sweep tries: the probabilities are "
                        "miscalibrated (the weights were still moving, or the loss over- or under-counts the "
                        f"foreground); try a longer --time-budget, or {stronger}")
    return warnings


def final_net(run_dir: Path, parts: Parts, train_batches: Batches, state: TrainState) -> tuple[Net, str]:
    """A single split's final net and what it is: the SGDR snapshots' ensemble, the SWA average, or the best."""
    device = parts.device
    if parts.snapshots is not None:
        return Ensemble(parts.snapshots.members(state.snapshots, device)).eval(), f"{state.snapshots} SGDR snapshots"
    if parts.swa is not None:
        if (averaged := swa_model(parts.swa, train_batches, device)) is not None:
            return averaged, f"SWA of {int(parts.swa.n_averaged)} epochs"
        log.info("SWA averaged nothing (the run ended before optim.swa_start); the model is the best epoch's")
    best = load_model(run_dir / "checkpoints" / "best.safetensors").net
    return best.to(device, memory_format=torch.channels_last), f"best epoch {state.best_epoch}"  # type: ignore[return-value]


def finish(config: TrainConfig, run_dir: Path, net: Net, held: list[Held], preprocess: Preprocess,
           device: torch.device, settings: Settings, *, made_of: str, record: dict[str, Any], ran: dict[str, Any],
           loss_fn: LossFn | None = None, history: list[dict[str, float]] | None = None) -> TrainResult:
    """`held`: one set (validation) or several (out of fold); `record`: what the kind of run adds to the model file's
    record (which also keeps the plan); `ran`: TrainResult's figures. Per-label figures and val_metrics take a
    second pass at the tuned rule."""
    if loss_fn is None:  # the figures do not need it, `validate` does
        loss_fn = partial(get_loss(config.loss.name), options=config.loss, ignore_index=config.data.ignore_index)
    out_of_fold = len(held) > 1
    names = () if out_of_fold else val_measures(config)  # val_metrics are figures of one fold at a time
    tuned = uses_sigmoid(config.model)
    record = run_record(config) | record | {"plan": settings.plan.to_dict(), "weights": made_of,
                                            "epochs_done": ran["epochs_done"], "stop_reason": ran["stop_reason"]}
    score = partial(_score, config, held, preprocess, loss_fn, device, settings)
    figures, probabilities, targets = score(keep=tuned, measures=() if tuned else names)
    threshold: float | None = None
    postprocess: dict[str, float] = {}
    if tuned:
        regions = None if held[0].regions is None else [r for h in held for r in h.regions or []]
        figures, threshold, postprocess = tune_on_validation(config, run_dir, probabilities, targets, regions,
                                                             "out-of-fold predictions" if out_of_fold else "validation")
        if config.model.multilabel or names:  # per-label figures (as during training) and the chosen ones, at the rule
            at_rule, _, _ = score(threshold=threshold, measures=names)
            figures = at_rule if config.model.multilabel else figures | {k: v for k, v in at_rule.items() if k not in figures}
    warnings = run_warnings(config, history or [], figures, threshold, [c["name"] for c in record["classes"]],
                            settings.balance_classes)
    record |= {"threshold_metric": config.decision.threshold_metric,
               "out_of_fold" if out_of_fold else "val_at_threshold": figures, "warnings": warnings}
    rule: dict[str, Any] = {"threshold": 0.5 if threshold is None else threshold, "postprocess": postprocess,
                            "training": record}
    if isinstance(net, Ensemble):
        save_ensemble(run_dir / "model.safetensors", list(net.cpu().members), preprocess, **rule)  # type: ignore[arg-type]
    else:
        save_model(run_dir / "model.safetensors", net.cpu(), preprocess, **rule)
    said = "".join(f", {k} {v} px" for k, v in postprocess.items() if v)
    log.info("model: %s%s%s; %s IoU %.4f  Dice %.4f  TGS mAP %.4f", made_of, f"; threshold {threshold:.2f}" if tuned
             else "", said, "out of fold" if out_of_fold else "validation", *(figures.get(k, np.nan)
                                                                                for k in ("iou", "dice", "tgs_map")))
    return TrainResult(run_dir, run_dir / "model.safetensors", threshold, figures, postprocess=postprocess,
                       binary=is_binary(config.model), warnings=warnings, **ran)


def _score(config: TrainConfig, held: list[Held], preprocess: Preprocess, loss_fn: LossFn, device: torch.device,
           settings: Settings, *, threshold: float = 0.5, keep: bool = False,
           measures: tuple[str, ...] = ()) -> tuple[dict[str, Any], Maps, Maps]:
    """Figures over all the held-out images, each set predicted by its own net; with `keep`, their foreground
    probabilities and truths, in one layout (validation.target_maps), for the sweep."""
    shared = MetricAccumulator(config.model.num_classes, ignore_index=config.data.ignore_index,  # out of fold: one
                               multilabel=config.model.multilabel) if len(held) > 1 else None  # for every fold's images
    figures: dict[str, Any] = {}
    kept, truths = [], []
    for h in held:
        figures, probabilities = validate(h.net, h.data, preprocess, loss_fn, device, settings.batch_size,
                                          threshold=threshold, keep_probabilities=keep,
                                          ignore_index=config.data.ignore_index, tile=settings.plan.predict_tile,
                                          regions=h.regions, measures=measures, into=shared)
        if probabilities is not None:
            kept.append(probabilities)
            truths.append(target_maps(h.data))
    if shared is None:
        return figures, kept[0] if kept else [], truths[0] if truths else []
    figures.pop("loss")  # the last fold's alone: no out-of-fold figure
    return figures, [m for block in kept for m in block], [m for block in truths for m in block]
