"""Validation: the network's loss and figures on held-out images, predicted as `unetkit predict` would.

Apart from the loop because it is prediction, not training: images go through a PredictionEngine
(inference/labelled.py) in the planned tile, whole, so the figures are the ones `evaluate`
reports for the same model and options. Sets of mixed sizes (patch training's) are ragged: their
predictions are scored in runs of one size, and their kept probabilities come back as a list.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from unetkit import distributed
from unetkit.data.dataset import LabelledSet
from unetkit.data.preprocess import Preprocess
from unetkit.export.model_file import SavedModel
from unetkit.inference.labelled import LabelledPrediction, predict_labelled, stacked
from unetkit.inference.predictor import Predictor
from unetkit.measures import MeasureSet
from unetkit.metrics import MetricAccumulator
from unetkit.models.base import SegmentationNet
from unetkit.models.ensemble import Ensemble
from unetkit.outputs import as_logits, foreground
from unetkit.training.losses import LossFn

VALIDATION_CHUNK_PIXELS = 2**22  # validation losses are taken over at most this many pixels at once (or one image)


@torch.no_grad()
def validate(net: SegmentationNet | Ensemble, data: LabelledSet, preprocess: Preprocess, loss_fn: LossFn, device: torch.device,
             batch_size: int, *, threshold: float = 0.5, keep_probabilities: bool = False,
             ignore_index: int | None = None, across_ranks: bool = False, tile: int | None = None,
             regions: list[np.ndarray] | None = None,
             measures: tuple[str, ...] = ()) -> tuple[dict[str, Any], torch.Tensor | list[torch.Tensor] | None]:
    """Loss and metrics of `net` on `data`, predicted as `unetkit predict` would (inference/labelled.py);
    optionally the foreground probabilities as uint8 (N, H, W), (N * K, H, W) for multi-label models
    (a list of such maps for a ragged set).

    The loss is taken per batch of `batch_size` images (fewer when they pass VALIDATION_CHUNK_PIXELS) on the
    probabilities, clamped at 1e-7 as Keras does.
    `across_ranks`: each rank holds a share of the images; the figures are over all shares. `tile`: the
    tile images larger than it are predicted in (the planned one, so `evaluate` sees what validation saw).
    `regions`: per image of `data`, the (H, W) bool pixels the figures count (a field of view; the loss
    still sees every pixel). `measures`: more figures by name (unetkit/measures.py), added to the summary.
    """
    config = net.config
    engine = Predictor(SavedModel(net, preprocess, threshold), batch_size=batch_size, torch_device=device, tile=tile)
    accumulator = MetricAccumulator(config.num_classes, ignore_index=ignore_index, multilabel=config.multilabel)
    chosen = MeasureSet(measures, config.num_classes, config.multilabel, ignore_index) if measures else None
    loss_sum, seen, kept = 0.0, 0, []
    predictions = predict_labelled(engine, ((i, data.images[i], data.masks[i]) for i in range(len(data))),
                                   postprocess=False)
    for chunk in _chunks(predictions, batch_size, VALIDATION_CHUNK_PIXELS):
        for run in _same_size_runs(chunk):  # the whole chunk, unless sizes differ
            keys, probabilities, masks, truths = stacked(run)
            target = torch.from_numpy(truths).long()
            loss_sum += float(loss_fn(as_logits(torch.from_numpy(probabilities), config), target)) * len(run)
            seen += len(run)
            inside = None if regions is None else np.stack([regions[k] for k in keys])
            accumulator.update(torch.from_numpy(masks), target, None if inside is None else torch.from_numpy(inside))
            for j in range(len(keys) if chosen is not None else 0):
                chosen.add(masks[j], truths[j], probabilities[j], None if inside is None else inside[j])  # type: ignore[union-attr]
            if keep_probabilities:
                kept.append((torch.from_numpy(foreground(probabilities, config)) * 255).round().to(torch.uint8))
    if across_ranks and distributed.launched():
        accumulator = MetricAccumulator.merged(distributed.all_gather(accumulator))
        if chosen is not None:
            shares = distributed.all_gather(chosen)
            chosen = MeasureSet.merged(shares, range(sum(len(share) for share in shares)))
        loss_sum, seen = distributed.sum_across([loss_sum, float(seen)], device)
    summary = accumulator.summary() | {"loss": loss_sum / max(seen, 1)}
    if chosen is not None:  # iou, dice and tgs_map stay the accumulator's (the same figures)
        summary |= {k: v for k, v in chosen.summary().items() if k not in summary}
    if not keep_probabilities:
        return summary, None
    return summary, ([m for block in kept for m in block] if data.ragged else torch.cat(kept))


def _same_size_runs(items: list[LabelledPrediction[Any]]) -> Iterator[list[LabelledPrediction[Any]]]:
    """Consecutive items of one image size, in order (one run for a set of one size)."""
    start = 0
    for end in range(1, len(items) + 1):
        if end == len(items) or items[end].truth.shape != items[start].truth.shape:
            yield items[start:end]
            start = end


def _chunks(items: Iterable[LabelledPrediction[Any]], size: int, max_pixels: int) -> Iterator[list[Any]]:
    """Lists of `size` predictions, or fewer when they reach `max_pixels`: the loss of a chunk holds its
    probabilities, logits and targets at once, which for 2048^2 windows would take gigabytes."""
    chunk: list[Any] = []
    pixels = 0
    for item in items:
        chunk.append(item)
        pixels += item.truth.shape[0] * item.truth.shape[1]
        if len(chunk) == size or pixels >= max_pixels:
            yield chunk
            chunk, pixels = [], 0
    if chunk:
        yield chunk


def target_maps(val_set: LabelledSet) -> torch.Tensor | list[torch.Tensor]:
    """The validation truths in the layout of `validate`'s kept probabilities: (N, H, W), one map per
    (image, label) for multi-label masks, a list of maps for a ragged set."""
    if not val_set.ragged:
        targets = torch.from_numpy(val_set.masks)
        return targets.permute(0, 3, 1, 2).flatten(0, 1) if targets.dim() == 4 else targets
    maps = [torch.from_numpy(mask) for mask in val_set.masks]
    return [m for mask in maps for m in (mask.permute(2, 0, 1) if mask.dim() == 3 else mask[None])]
