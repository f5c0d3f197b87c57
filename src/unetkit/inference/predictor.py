"""Applying a saved model to images of any size, batched where sizes allow.

Images stream through: a batch is formed from consecutive images of the same size, run,
and released, so a folder of any length costs the memory of one batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np
import torch

from unetkit.data.preprocess import resize_logits
from unetkit.errors import UserError
from unetkit.export.model_file import SavedModel
from unetkit.inference.postprocess import binary_decision
from unetkit.runtime import resolve_device

Key = TypeVar("Key")


class Predictor:
    """Turns (H, W, C) images into probabilities (K, H, W) float32 and masks (H, W) uint8."""

    def __init__(self, saved: SavedModel, *, device: str = "auto", threshold: float | None = None,
                 batch_size: int = 16) -> None:
        self.saved = saved
        self.device = resolve_device(device)
        self.net = saved.net.to(self.device, memory_format=torch.channels_last).eval()
        if threshold is not None and not saved.config.sigmoid:
            raise UserError("a threshold applies to binary and multi-label models only; this model has "
                            f"{saved.config.num_classes} classes and predicts the most probable one")
        self.threshold = saved.threshold if saved.config.sigmoid and threshold is None else threshold
        self.batch_size = batch_size

    @property
    def num_classes(self) -> int:
        return self.saved.config.num_classes

    @torch.inference_mode()
    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, C) images of one size -> (N, K, H, W) float32 probabilities (sigmoid or softmax)."""
        height, width = images.shape[1:3]
        x = self.saved.preprocess.to_tensor(images).to(self.device, memory_format=torch.channels_last)
        logits = resize_logits(self.net(x), height, width)
        prob = torch.sigmoid(logits) if self.saved.config.sigmoid else torch.softmax(logits, dim=1)
        return prob.float().cpu().numpy()

    def to_mask(self, probabilities: np.ndarray) -> np.ndarray:
        """(K, H, W) probabilities -> (H, W) uint8: 0/1 by threshold (binary) or argmax class index;
        multi-label: (K, H, W) uint8 0/1, one map per label."""
        if self.saved.config.multilabel:
            return (probabilities > self.threshold).astype(np.uint8)
        if self.num_classes == 1:
            rule = self.saved.postprocess
            pre = self.saved.preprocess
            if pre.size_policy == "resize" and rule:  # areas were tuned on resize_to x resize_to maps
                factor = probabilities.shape[1] * probabilities.shape[2] / pre.resize_to**2
                rule = {name: int(round(area * factor)) for name, area in rule.items()}
            return binary_decision(probabilities[0], self.threshold, **rule)
        return probabilities.argmax(0).astype(np.uint8)

    def run(self, items: Iterable[tuple[Key, np.ndarray]]) -> Iterator[tuple[Key, np.ndarray, np.ndarray]]:
        """(key, image) in order -> (key, image, probabilities) in the same order, batched by size."""
        pending: list[tuple[Key, np.ndarray]] = []
        for key, image in items:
            if pending and (len(pending) == self.batch_size or image.shape != pending[0][1].shape
                            or image.dtype != pending[0][1].dtype):
                yield from self._flush(pending)
                pending = []
            pending.append((key, image))
        if pending:
            yield from self._flush(pending)

    def _flush(self, pending: list[tuple[Key, np.ndarray]]) -> Iterator[tuple[Key, np.ndarray, np.ndarray]]:
        probabilities = self.probabilities(np.stack([image for _, image in pending]))
        for (key, image), prob in zip(pending, probabilities):
            yield key, image, prob
