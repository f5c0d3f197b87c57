"""Choosing the decision rule on validation: the threshold (as the TGS kernel did), then the
minimum component area and the empty-mask rule (as the TGS winners did)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from unetkit.inference.postprocess import binary_decision
from unetkit.metrics import MetricAccumulator
from unetkit.runtime import log

THRESHOLDS = tuple(round(0.02 * i, 2) for i in range(1, 50))  # 0.02 .. 0.98
# Candidate areas in pixels for a 101 x 101 image; scaled with the image area.
AREAS = (0, 5, 10, 20, 40, 80, 160)


@dataclass
class Decision:
    """The tuned rule and the validation figures it gives."""

    threshold: float
    postprocess: dict[str, int] = field(default_factory=dict)  # min_area, empty_below
    metrics: dict[str, Any] = field(default_factory=dict)


def _score(masks: torch.Tensor, targets: torch.Tensor, ignore_index: int | None = None) -> dict[str, Any]:
    accumulator = MetricAccumulator(num_classes=1, ignore_index=ignore_index)
    for start in range(0, len(masks), 256):
        accumulator.update(masks[start : start + 256], targets[start : start + 256])
    return accumulator.summary()


def sweep_threshold(probabilities: torch.Tensor, targets: torch.Tensor, metric: str,
                    thresholds: tuple[float, ...] = THRESHOLDS,
                    ignore_index: int | None = None) -> tuple[float, list[dict[str, float]]]:
    """Best threshold for `metric` ("tgs_map", "iou", "dice") and the whole sweep table.

    probabilities (N, H, W) foreground probability (float, or uint8 in 0..255); targets
    (N, H, W) 0/1. Ties go to the threshold nearest 0.5.
    """
    scale = 255.0 if probabilities.dtype == torch.uint8 else 1.0
    table = []
    for t in thresholds:
        summary = _score((probabilities.float() / scale > t).to(torch.uint8), targets, ignore_index)
        table.append({"threshold": t, "iou": summary["iou"], "dice": summary["dice"], "tgs_map": summary["tgs_map"]})
    best = max(table, key=lambda row: (row[metric], -abs(row["threshold"] - 0.5)))
    return float(best["threshold"]), table


def tune_decision(probabilities: torch.Tensor, targets: torch.Tensor, metric: str, *, tune_postprocess: bool = True,
                  ignore_index: int | None = None) -> tuple[Decision, list[dict[str, float]]]:
    """Threshold by sweep, then (min_area, empty_below) by grid at that threshold; only strict gains count."""
    threshold, table = sweep_threshold(probabilities, targets, metric, ignore_index=ignore_index)
    scale = 255.0 if probabilities.dtype == torch.uint8 else 1.0
    probs = (probabilities.float() / scale).numpy()
    base = _score((torch.from_numpy(probs) > threshold).to(torch.uint8), targets, ignore_index)
    decision = Decision(threshold, {"min_area": 0, "empty_below": 0}, base)
    if not tune_postprocess:
        return decision, table
    factor = probs.shape[1] * probs.shape[2] / (101 * 101)
    areas = sorted({int(round(a * factor)) for a in AREAS})
    for min_area in areas:
        # Components are labelled once per min_area; the empty rule then only compares areas.
        kept = np.stack([binary_decision(p, threshold, min_area) for p in probs])
        predicted_area = kept.reshape(len(kept), -1).sum(1)
        for empty_below in areas:
            masks = kept * (predicted_area >= empty_below)[:, None, None].astype(np.uint8)
            summary = _score(torch.from_numpy(masks), targets, ignore_index)
            if summary[metric] > decision.metrics[metric] + 1e-12:
                decision = Decision(threshold, {"min_area": min_area, "empty_below": empty_below}, summary)
    return decision, table


def warn_if_blind(decision: Decision, targets: torch.Tensor, ignore_index: int | None, scored_on: str) -> None:
    """Say so when the stored rule finds nothing where validation has foreground: a model that predicts
    empty masks can still score well on TGS mAP (empty truths count 1), and must not pass unnoticed."""
    labelled = targets > 0 if ignore_index is None else (targets > 0) & (targets != ignore_index)
    if bool(labelled.any()) and decision.metrics.get("iou", 1.0) == 0.0:
        log.warning("warning: under the stored decision rule the model finds no foreground on %s (IoU 0, "
                    "TGS mAP %.4f): train longer, or check the masks", scored_on, decision.metrics.get("tgs_map", 0.0))
