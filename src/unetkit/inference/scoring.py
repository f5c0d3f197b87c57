"""Predicting labelled pairs and scoring each one: what `evaluate` and the run report share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from unetkit.data.dataset import Pair, load_pair
from unetkit.data.masks import ClassPalette
from unetkit.inference.predictor import Predictor
from unetkit.metrics import MetricAccumulator


@dataclass
class Scored:
    """One labelled image after prediction, with its own scores."""

    pair: Pair
    image: np.ndarray  # (H, W, C)
    truth: np.ndarray  # (H, W) indices, or (H, W, K) labels
    prediction: np.ndarray  # (H, W) indices, or (K, H, W) labels
    row: dict[str, float | str]  # stem, iou, dice, tgs_score, true_coverage, predicted_coverage


def scored_pairs(predictor: Predictor, pairs: list[Pair], accumulator: MetricAccumulator,
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
