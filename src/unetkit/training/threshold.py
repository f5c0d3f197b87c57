"""Choosing the probability threshold on validation, as the TGS kernel did after training."""

from __future__ import annotations

import torch

from unetkit.metrics import MetricAccumulator

THRESHOLDS = tuple(round(0.02 * i, 2) for i in range(1, 50))  # 0.02 .. 0.98


def sweep_threshold(probabilities: torch.Tensor, targets: torch.Tensor, metric: str,
                    thresholds: tuple[float, ...] = THRESHOLDS) -> tuple[float, list[dict[str, float]]]:
    """Best threshold for `metric` ("tgs_map", "iou", "dice") and the whole sweep table.

    probabilities (N, H, W) foreground probability (float, or uint8 in 0..255); targets
    (N, H, W) 0/1. Ties go to the threshold nearest 0.5.
    """
    scale = 255.0 if probabilities.dtype == torch.uint8 else 1.0
    table = []
    for t in thresholds:
        accumulator = MetricAccumulator(num_classes=1)
        for start in range(0, len(probabilities), 256):
            chunk = probabilities[start : start + 256]
            accumulator.update((chunk.float() / scale > t).to(torch.uint8), targets[start : start + 256])
        summary = accumulator.summary()
        table.append({"threshold": t, "iou": summary["iou"], "dice": summary["dice"], "tgs_map": summary["tgs_map"]})
    best = max(table, key=lambda row: (row[metric], -abs(row["threshold"] - 0.5)))
    return float(best["threshold"]), table
