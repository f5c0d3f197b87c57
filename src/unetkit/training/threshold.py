"""Choosing the decision rule on validation: the threshold (as the TGS kernel did), then the
minimum component area and the empty-mask rule (as the TGS winners did)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit.config import TrainConfig
from unetkit.fileio import write_csv
from unetkit.inference.postprocess import binary_decision
from unetkit.metrics import MetricAccumulator
from unetkit.runtime import log

THRESHOLDS = tuple(round(0.02 * i, 2) for i in range(1, 50))  # 0.02 .. 0.98
# Candidate areas in pixels for a 101 x 101 image; scaled with the image area.
AREAS = (0, 5, 10, 20, 40, 80, 160)


@dataclass
class Decision:
    threshold: float
    postprocess: dict[str, int] = field(default_factory=dict)  # min_area, empty_below
    metrics: dict[str, Any] = field(default_factory=dict)


Maps = torch.Tensor | Sequence[torch.Tensor]  # (N, H, W), or N maps (H_i, W_i) of mixed sizes


def _groups(probabilities: Maps, targets: Maps) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(probabilities as float in [0, 1], targets) stacked by size: one group for a stacked set, one per size
    for mixed sizes. uint8 maps hold 0..255."""
    if isinstance(probabilities, torch.Tensor):
        groups = [(probabilities, targets)]
    else:
        by_size: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for p, t in zip(probabilities, targets):
            by_size.setdefault(tuple(p.shape), []).append((p, t))
        groups = [(torch.stack([p for p, _ in pair]), torch.stack([t for _, t in pair])) for pair in by_size.values()]
    return [(p.float() / (255.0 if p.dtype == torch.uint8 else 1.0), t) for p, t in groups]  # type: ignore[misc]


def _score(groups: list[tuple[torch.Tensor, torch.Tensor]], ignore_index: int | None = None) -> dict[str, Any]:
    """Figures of binary masks over all groups of (masks (n, H, W), targets (n, H, W))."""
    accumulator = MetricAccumulator(num_classes=1, ignore_index=ignore_index)
    for masks, targets in groups:
        for start in range(0, len(masks), 256):
            accumulator.update(masks[start : start + 256], targets[start : start + 256])
    return accumulator.summary()


def tune_decision(probabilities: Maps, targets: Maps, metric: str, *, tune_postprocess: bool = True,
                  ignore_index: int | None = None) -> tuple[Decision, list[dict[str, float]]]:
    """The threshold best for `metric` ("tgs_map", "iou", "dice"; ties go to the one nearest 0.5), then (min_area,
    empty_below) by grid at that threshold, only strict gains counting; and the sweep's table. probabilities
    (N, H, W) foreground probability (float, or uint8 in 0..255), or a list of such maps of mixed sizes; targets
    alike, 0/1. Candidate areas scale with the mean image area (AREAS are for 101 x 101)."""
    float_groups = _groups(probabilities, targets)  # stacked and converted once for the sweep and the grid
    table, summaries = [], {}
    for t in THRESHOLDS:
        summaries[t] = _score([((p > t).to(torch.uint8), target) for p, target in float_groups], ignore_index)
        table.append({"threshold": t} | {k: summaries[t][k] for k in ("iou", "dice", "tgs_map")})
    threshold = float(max(table, key=lambda row: (row[metric], -abs(row["threshold"] - 0.5)))["threshold"])
    decision = Decision(threshold, {"min_area": 0, "empty_below": 0}, summaries[threshold])
    if not tune_postprocess:
        return decision, table
    groups = [(p.numpy(), t) for p, t in float_groups]
    factor = sum(p.size for p, _ in groups) / sum(len(p) for p, _ in groups) / (101 * 101)
    areas = sorted({int(round(a * factor)) for a in AREAS})
    for min_area in areas:
        # Components are labelled once per min_area; the empty rule then only compares areas.
        kept = [np.stack([binary_decision(p, threshold, min_area) for p in probs]) for probs, _ in groups]
        predicted_area = [k.reshape(len(k), -1).sum(1) for k in kept]
        for empty_below in areas:
            masks = [k * (area >= empty_below)[:, None, None].astype(np.uint8) for k, area in zip(kept, predicted_area)]
            summary = _score([(torch.from_numpy(m), t) for m, (_, t) in zip(masks, groups)], ignore_index)
            if summary[metric] > decision.metrics[metric] + 1e-12:
                decision = Decision(threshold, {"min_area": min_area, "empty_below": empty_below}, summary)
    return decision, table


def tune_on_validation(config: TrainConfig, run_dir: Path, probabilities: Maps, targets: Maps,
                       regions: list[np.ndarray] | None, scored_on: str = "validation",
                       ) -> tuple[dict[str, Any], float, dict[str, float]]:
    """The decision rule tuned on validation (threshold_sweep.csv written): (its figures, threshold, postprocess).
    Pixels outside the `regions` take the ignored value, so the sweep counts only the pixels inside."""
    ignore_index = config.data.ignore_index
    if regions is not None:
        ignore_index = 255 if ignore_index is None else ignore_index  # binary truths are 0/1: 255 is free
        labels = config.model.num_classes if config.model.multilabel else 1
        expanded = [region for region in regions for _ in range(labels)]  # multi-label: one map per label
        masked = [t.masked_fill(~torch.from_numpy(r), ignore_index) for t, r in zip(targets, expanded)]
        targets = torch.stack(masked) if isinstance(targets, torch.Tensor) else masked
    decision, table = tune_decision(probabilities, targets, config.decision.threshold_metric,
                                    tune_postprocess=config.decision.tune_postprocess and not config.model.multilabel,
                                    ignore_index=ignore_index)
    # A model that predicts empty masks can still score well on TGS mAP (empty truths count 1): say so.
    maps = [targets] if isinstance(targets, torch.Tensor) else targets
    labelled = any(bool(((t > 0) if ignore_index is None else (t > 0) & (t != ignore_index)).any()) for t in maps)
    if labelled and decision.metrics.get("iou", 1.0) == 0.0:
        log.warning("warning: under the stored decision rule the model finds no foreground on %s (IoU 0, "
                    "TGS mAP %.4f): train longer, or check the masks", scored_on, decision.metrics.get("tgs_map", 0.0))
    write_csv(table, run_dir / "threshold_sweep.csv")
    return decision.metrics, decision.threshold, decision.postprocess
