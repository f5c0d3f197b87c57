"""Predicting labelled images: the one path that validation, the out-of-fold scores of k-fold
runs, the training samples, `evaluate` and the run report all take. Images go through a
PredictionEngine exactly as `unetkit predict` sends them (batching, tiling, TTA, activation,
decision rule), so a figure measured during training is the one `evaluate` reports."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Generic

import numpy as np

from unetkit.inference.engine import Key, PredictionEngine


@dataclass
class LabelledPrediction(Generic[Key]):
    """One labelled image after prediction."""

    key: Key
    image: np.ndarray  # (H, W, C) raw pixels
    truth: np.ndarray  # (H, W) class indices, or (H, W, K) 0/1 labels
    probabilities: np.ndarray  # (K, H, W) float32
    mask: np.ndarray  # (H, W) uint8 by the model's decision rule, or (K, H, W) for multi-label models


def truth_maps(truth: np.ndarray) -> np.ndarray:
    """A truth in the layout of the masks: (H, W) as it is, (H, W, K) labels as (K, H, W)."""
    return np.moveaxis(truth, -1, 0) if truth.ndim == 3 else truth


def predict_labelled(engine: PredictionEngine, items: Iterable[tuple[Key, np.ndarray, np.ndarray]], *,
                     postprocess: bool = True) -> Iterator[LabelledPrediction[Key]]:
    """(key, (H, W, C) image, truth) in order -> their predictions, in the same order. `postprocess`: the
    stored min-area and empty-mask rules on binary masks (off while those rules are being tuned)."""
    pairs: Iterable[tuple[tuple[Key, np.ndarray], np.ndarray]] = (((key, truth), image) for key, image, truth in items)
    for (key, truth), image, probabilities in engine.run(pairs):
        yield LabelledPrediction(key, image, truth, probabilities, engine.to_mask(probabilities, postprocess=postprocess))

