"""Batches for training and validation, from a `LabelledSet` held in memory.

No DataLoader workers: with decoded arrays in memory a batch is an index, a copy and an
augmentation draw, which costs far less than the network step (benchmarks/
train_throughput.py), so worker processes would only take CPU cores from the
convolutions. Each epoch's order and augmentation draws come from (seed, epoch), so a
resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch

from unetkit.data.augment import AugmentConfig, Augmenter
from unetkit.data.dataset import LabelledSet
from unetkit.data.io import dtype_range
from unetkit.data.preprocess import Preprocess


class Batch(NamedTuple):
    """images (B, C, H, W) float32, masks (B, H, W) int64 (multi-label: (B, K, H, W)), weights or None."""

    images: torch.Tensor
    masks: torch.Tensor
    weights: torch.Tensor | None


class BatchIterator:
    """Iterates a LabelledSet in batches, shuffled and augmented for training."""

    def __init__(self, data: LabelledSet, preprocess: Preprocess, batch_size: int, *, shuffle: bool,
                 augment: AugmentConfig | None = None, seed: int = 0) -> None:
        self.data = data
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augmenter = Augmenter(augment) if augment is not None else None
        self.seed = seed

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of epoch `epoch` (0-based)."""
        rng = np.random.default_rng((self.seed, epoch))
        order = rng.permutation(len(self.data)) if self.shuffle else np.arange(len(self.data))
        if self.augmenter is not None:
            self.augmenter.reseed(int(rng.integers(2**31)))
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            images, masks = self.data.images[index], self.data.masks[index]
            weights = self.data.weights[index] if self.data.weights is not None else None
            if self.augmenter is not None:
                images = images.astype(np.float32) / dtype_range(images.dtype)
                images, masks, weights = self.augmenter(images, masks, weights)
            target = torch.from_numpy(np.ascontiguousarray(masks)).long()
            if target.dim() == 4:  # multi-label (B, H, W, K) -> (B, K, H, W)
                target = target.permute(0, 3, 1, 2).contiguous()
            yield Batch(self.preprocess.to_tensor(images), target,
                        torch.from_numpy(weights) if weights is not None else None)
