"""Validation: the network's loss and figures on held-out images, predicted as `unetkit predict` would.

Apart from the loop because it is prediction, not training: images go through the Predictor in the
planned tile, whole, so the figures are the ones `evaluate` reports for the same model and options.
Images larger than the tile are predicted in blended tiles as `predict` does, so their loss is taken
on the logits of the blended probabilities. Sets of mixed sizes (patch training's) are ragged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from unetkit import distributed
from unetkit.data.dataset import LabelledSet
from unetkit.data.io import check_finite
from unetkit.data.preprocess import Preprocess
from unetkit.export.model_file import SavedModel
from unetkit.inference.labelled import truth_maps
from unetkit.inference.predictor import Predictor
from unetkit.measures import MeasureSet
from unetkit.metrics import MetricAccumulator
from unetkit.models.base import SegmentationNet
from unetkit.models.ensemble import Ensemble
from unetkit.outputs import as_logits, foreground, hard_mask, probabilities
from unetkit.training.losses import LossFn

VALIDATION_CHUNK_PIXELS = 2**22  # a validation batch holds at most this many pixels (or one image)


@torch.no_grad()
def validate(net: SegmentationNet | Ensemble, data: LabelledSet, preprocess: Preprocess, loss_fn: LossFn, device: torch.device,
             batch_size: int, *, threshold: float = 0.5, keep_probabilities: bool = False,
             ignore_index: int | None = None, across_ranks: bool = False, tile: int | None = None,
             regions: list[np.ndarray] | None = None,
             measures: tuple[str, ...] = (), into: MetricAccumulator | None = None,
             ) -> tuple[dict[str, Any], torch.Tensor | list[torch.Tensor] | None]:
    """Loss and metrics of `net` on `data`; optionally the foreground probabilities as uint8 (N, H, W), (N * K, H, W)
    for multi-label models (a list of such maps for a ragged set). The loss is `loss_fn` on the logits of each batch,
    weighted by the images it holds.

    `across_ranks`: each rank holds a share of the images; the figures are over all shares. `regions`: per image, the
    (H, W) bool pixels the figures count (a field of view; the loss still sees every pixel). `measures`: more figures
    by name (unetkit/measures.py). `into`: the accumulator the figures are added to, so that they are over every
    image it holds (out of fold, each fold's images predicted by its own net)."""
    config = net.config
    engine = Predictor(SavedModel(net, preprocess, threshold), batch_size=batch_size, torch_device=device, tile=tile)
    accumulator = into if into is not None else MetricAccumulator(config.num_classes, ignore_index=ignore_index,
                                                                  multilabel=config.multilabel)
    chosen = MeasureSet(measures, config.num_classes, config.multilabel, ignore_index) if measures else None
    loss_sum, kept = torch.zeros((), dtype=torch.float64, device=device), []
    for batch in _batches(data, batch_size, engine):
        images = np.stack([data.images[i] for i in batch])
        check_finite(images.reshape(-1, *images.shape[2:]), "images")  # the rule image files keep (data/io.py)
        truths = np.stack([truth_maps(data.masks[i]) for i in batch])
        if engine.needs_tiles(*images.shape[1:3]):  # one image, blended from tiles as `predict` blends them
            probs = torch.from_numpy(engine.tiled(images[0]))[None].to(device)
            logits = as_logits(probs, config)
        else:
            logits = engine.logits(images)
            probs = probabilities(logits, config)
        loss_sum += loss_fn(logits, torch.from_numpy(truths).to(device).long()).double() * len(batch)
        on_device = [hard_mask(probs, config, threshold)]
        if keep_probabilities:
            on_device.append((foreground(probs, config) * 255).round().to(torch.uint8))
        if chosen is not None:
            on_device.append(probs)
        on_host = _to_host(on_device)  # the batch's one transfer
        masks = on_host[0]
        inside = None if regions is None else np.stack([regions[i] for i in batch])
        accumulator.update(masks, torch.from_numpy(truths).long(), None if inside is None else torch.from_numpy(inside))
        for j in range(len(batch) if chosen is not None else 0):
            chosen.add(masks[j].numpy(), truths[j], on_host[-1][j].numpy(),  # type: ignore[union-attr]
                       None if inside is None else inside[j])
        if keep_probabilities:
            kept.append(on_host[1])
    loss, count = float(loss_sum), float(len(data))  # every image is in one batch
    if across_ranks and distributed.launched():
        accumulator = MetricAccumulator.merged(distributed.all_gather(accumulator))
        if chosen is not None:
            shares = distributed.all_gather(chosen)
            chosen = MeasureSet.merged(shares, range(sum(len(share) for share in shares)))
        loss, count = distributed.sum_across([loss, count], device)
    summary = accumulator.summary() | {"loss": loss / max(count, 1)}
    if chosen is not None:  # iou, dice and tgs_map stay the accumulator's (the same figures)
        summary |= {k: v for k, v in chosen.summary().items() if k not in summary}
    if not keep_probabilities:
        return summary, None
    return summary, ([m for block in kept for m in block] if data.ragged else torch.cat(kept))


def _batches(data: LabelledSet, size: int, engine: Predictor) -> Iterator[list[int]]:
    """Indices of consecutive images of one size, `size` at most, fewer when they reach
    VALIDATION_CHUNK_PIXELS (the loss holds a batch's logits and targets at once); a tiled image alone."""
    batch, pixels = [], 0
    for i in range(len(data)):
        shape = data.images[i].shape
        if batch and (shape != data.images[batch[0]].shape or data.images[i].dtype != data.images[batch[0]].dtype
                      or engine.needs_tiles(*shape[:2])):
            yield batch
            batch, pixels = [], 0
        batch.append(i)
        pixels += shape[0] * shape[1]
        if len(batch) == size or pixels >= VALIDATION_CHUNK_PIXELS or engine.needs_tiles(*shape[:2]):
            yield batch
            batch, pixels = [], 0
    if batch:
        yield batch


def _to_host(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors on the host in one copy: flattened into one buffer (uint8 when they all are, else float32,
    which holds uint8 values exactly), then split back into their shapes and dtypes."""
    if tensors[0].device.type == "cpu":
        return tensors
    dtype = torch.uint8 if all(t.dtype == torch.uint8 for t in tensors) else torch.float32
    host = torch.cat([t.reshape(-1).to(dtype) for t in tensors]).cpu()
    parts = host.split([t.numel() for t in tensors])
    return [part.reshape(t.shape).to(t.dtype) for part, t in zip(parts, tensors)]


def target_maps(val_set: LabelledSet) -> torch.Tensor | list[torch.Tensor]:
    """The validation truths in the layout of `validate`'s kept probabilities: (N, H, W), one map per
    (image, label) for multi-label masks, a list of maps for a ragged set."""
    if not val_set.ragged:
        targets = torch.from_numpy(val_set.masks)
        return targets.permute(0, 3, 1, 2).flatten(0, 1) if targets.dim() == 4 else targets
    maps = [torch.from_numpy(mask) for mask in val_set.masks]
    return [m for mask in maps for m in (mask.permute(2, 0, 1) if mask.dim() == 3 else mask[None])]
