"""Predicting labelled pairs from a folder and scoring each one: what `evaluate` and the run report share."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unetkit.data.dataset import Pair, load_pair
from unetkit.data.fov import read_region
from unetkit.data.masks import ClassPalette, read_class_palette
from unetkit.data.pairing import DataSource
from unetkit.inference.engine import AppliedModel, PredictionEngine
from unetkit.inference.labelled import LabelledPrediction, predict_labelled, truth_maps
from unetkit.measures import MeasureSet
from unetkit.metrics import MetricAccumulator


@dataclass
class Scored:
    """One labelled image after prediction, with its own scores."""

    pair: Pair
    image: np.ndarray  # (H, W, C)
    truth: np.ndarray  # (H, W) indices, or (H, W, K) labels
    prediction: np.ndarray  # (H, W) indices, or (K, H, W) labels
    row: dict[str, float | str]  # stem, iou, dice, tgs_score, true_coverage, predicted_coverage, chosen measures
    region: np.ndarray | None = None  # (H, W) bool: the pixels scored (a field of view); None: all


def training_ignore_index(saved: AppliedModel) -> int | None:
    """The ignore_index the model's training data used (data.ignore_index; flat in older records)."""
    config = saved.training.get("config") or {}
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    return data.get("ignore_index", config.get("ignore_index"))


def accumulator_for(saved: AppliedModel) -> MetricAccumulator:
    """Metrics as the model's training data counted them (its ignore_index, labels or classes)."""
    return MetricAccumulator(saved.config.num_classes, ignore_index=training_ignore_index(saved),
                             multilabel=saved.config.multilabel)


def palette_for(saved: AppliedModel, data_dir: DataSource | str | os.PathLike[str]) -> ClassPalette | None:
    """DATA_DIR/classes.yaml, which says how its masks store classes (none for multi-label models)."""
    return None if saved.config.multilabel else read_class_palette(data_dir, saved.config.num_classes,
                                                                     training_ignore_index(saved))


def add_scores(accumulator: MetricAccumulator, predicted: LabelledPrediction,
               region: np.ndarray | None = None) -> dict[str, float]:
    """Add one prediction to `accumulator`; its own iou, dice, tgs_score and coverages (inside `region`)."""
    accumulator.update(torch.from_numpy(predicted.mask)[None], torch.from_numpy(truth_maps(predicted.truth))[None],
                       None if region is None else torch.from_numpy(region)[None])
    truth, ignore_index = predicted.truth, accumulator.ignore_index
    labelled = truth > 0 if ignore_index is None else (truth > 0) & (truth != ignore_index)
    predicted_any = predicted.mask > 0
    if region is not None:  # coverage of the region: (H, W) masks, or (H, W, K) truths and (K, H, W) masks
        labelled, predicted_any = labelled[region], predicted_any[..., region]
    return {"iou": accumulator.image_iou[-1], "dice": accumulator.image_dice[-1],
            "tgs_score": accumulator.image_score[-1], "true_coverage": float(labelled.mean()) if labelled.size else 0.0,
            "predicted_coverage": float(predicted_any.mean()) if predicted_any.size else 0.0}


def scored_pairs(predictor: PredictionEngine, pairs: list[Pair], accumulator: MetricAccumulator,
                 palette: ClassPalette | None = None, *, regions: dict[str, Path] | None = None,
                 measures: MeasureSet | None = None,
                 spacings: dict[str, tuple[float, float]] | None = None) -> Iterator[Scored]:
    """Predict every pair as `predict` would, add it to `accumulator` (and `measures`), and yield it with its
    scores; `regions` (stem -> region mask, data/fov.py) restrict every figure to their pixels; `spacings`
    (stem -> (dy, dx), data/spacing.py) are the pixel sizes of the boundary distances."""
    config = predictor.saved.config
    items = ((pair, *load_pair(pair, config.in_channels, config.num_classes, accumulator.ignore_index, palette,
                               config.multilabel)) for pair in pairs)
    for predicted in predict_labelled(predictor, items):
        region = read_region(regions[predicted.key.stem], predicted.truth.shape) if regions else None
        row: dict[str, float | str] = {"stem": predicted.key.stem} | add_scores(accumulator, predicted, region)
        if measures is not None:
            spacing = spacings[predicted.key.stem] if spacings else None
            own = measures.add(predicted.mask, truth_maps(predicted.truth), predicted.probabilities, region, spacing)
            row |= {name: value for name, value in own.items() if name not in row and name != "tgs_map"}
        yield Scored(predicted.key, predicted.image, predicted.truth, predicted.mask, row, region)
