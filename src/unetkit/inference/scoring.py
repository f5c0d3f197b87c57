"""Predicting labelled pairs and scoring each one: what `evaluate` and the run report share."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from unetkit.data.dataset import Pair, load_pair
from unetkit.data.masks import ClassPalette, read_class_palette
from unetkit.inference.engine import AppliedModel, PredictionEngine
from unetkit.metrics import MetricAccumulator


@dataclass
class Scored:
    """One labelled image after prediction, with its own scores."""

    pair: Pair
    image: np.ndarray  # (H, W, C)
    truth: np.ndarray  # (H, W) indices, or (H, W, K) labels
    prediction: np.ndarray  # (H, W) indices, or (K, H, W) labels
    row: dict[str, float | str]  # stem, iou, dice, tgs_score, true_coverage, predicted_coverage


def accumulator_for(saved: AppliedModel) -> MetricAccumulator:
    """Metrics as the model's training data counted them (its ignore_index, labels or classes)."""
    ignore_index = saved.training.get("config", {}).get("ignore_index")
    return MetricAccumulator(saved.config.num_classes, ignore_index=ignore_index, multilabel=saved.config.multilabel)


def palette_for(saved: AppliedModel, data_dir: str | os.PathLike[str]) -> ClassPalette | None:
    """DATA_DIR/classes.yaml, which says how its masks store classes (none for multi-label models)."""
    return None if saved.config.multilabel else read_class_palette(data_dir, saved.config.num_classes)


def scored_pairs(predictor: PredictionEngine, pairs: list[Pair], accumulator: MetricAccumulator,
                 palette: ClassPalette | None = None) -> Iterator[Scored]:
    """Predict every pair as `predict` would, add it to `accumulator`, and yield it with its scores."""
    config = predictor.saved.config
    ignore_index = accumulator.ignore_index

    def items() -> Iterator[tuple[tuple[Pair, np.ndarray], np.ndarray]]:
        for pair in pairs:
            image, mask = load_pair(pair, config.in_channels, config.num_classes, ignore_index, palette,
                                    config.multilabel)
            yield (pair, mask), image

    for (pair, truth), image, prob in predictor.run(items()):
        pred = predictor.to_mask(prob)
        p, t = torch.from_numpy(pred)[None], torch.from_numpy(truth)[None]
        if config.multilabel:  # truth (H, W, K) -> (1, K, H, W), like the prediction
            t = t.permute(0, 3, 1, 2)
        accumulator.update(p, t)
        labelled = truth > 0 if ignore_index is None else (truth > 0) & (truth != ignore_index)
        row = {"stem": pair.stem, "iou": accumulator.image_iou[-1], "dice": accumulator.image_dice[-1],
               "tgs_score": accumulator.image_score[-1], "true_coverage": float(labelled.mean()),
               "predicted_coverage": float((pred > 0).mean())}
        yield Scored(pair, image, truth, pred, row)
