"""Batches for training and validation, from a `LabelledSet` held in memory.

No DataLoader workers: with decoded arrays in memory a batch is an index, a copy and an
augmentation draw, which costs far less than the network step (benchmarks/
train_throughput.py), so worker processes would only take CPU cores from the
convolutions. Each epoch's order and augmentation draws come from (seed, epoch), so a
resumed run sees the same batches as an uninterrupted one.

Under torchrun the sampler is written here rather than taken from torch's
DistributedSampler, which pads the last round with repeated images so every rank gets as
many: here each global batch of `batch_size` images is split between the ranks, every
image is seen exactly once per epoch, and each rank's loss is scaled by its share of the
global batch, so N processes take the same optimiser steps as one process would.
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
    """images (B, C, H, W) float32, masks (B, H, W) int64 (multi-label: (B, K, H, W)), weights or None.

    loss_scale: this rank's images over the global batch's, times the number of ranks (1.0 for
    one process); 0.0 marks a stand-in batch for a rank the last global batch left without images.
    """

    images: torch.Tensor
    masks: torch.Tensor
    weights: torch.Tensor | None
    loss_scale: float = 1.0


class BatchIterator:
    """Iterates a LabelledSet in batches, shuffled and augmented for training."""

    def __init__(self, data: LabelledSet, preprocess: Preprocess, batch_size: int, *, shuffle: bool,
                 augment: AugmentConfig | None = None, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        """`batch_size` is the global batch: with `world_size` ranks this one takes its share of each."""
        self.data = data
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augmenter = Augmenter(augment) if augment is not None else None
        self.seed = seed
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of epoch `epoch` (0-based)."""
        rng = np.random.default_rng((self.seed, epoch))
        order = rng.permutation(len(self.data)) if self.shuffle else np.arange(len(self.data))
        if self.augmenter is not None:  # every rank draws its own augmentations
            self.augmenter.reseed(int(rng.integers(2**31)) + self.rank)
        for start in range(0, len(order), self.batch_size):
            index, loss_scale = self._share(order[start : start + self.batch_size])
            images, masks = self.data.images[index], self.data.masks[index]
            weights = self.data.weights[index] if self.data.weights is not None else None
            if self.augmenter is not None:
                images = images.astype(np.float32) / dtype_range(images.dtype)
                images, masks, weights = self.augmenter(images, masks, weights)
            target = torch.from_numpy(np.ascontiguousarray(masks)).long()
            if target.dim() == 4:  # multi-label (B, H, W, K) -> (B, K, H, W)
                target = target.permute(0, 3, 1, 2).contiguous()
            yield Batch(self.preprocess.to_tensor(images), target,
                        torch.from_numpy(weights) if weights is not None else None, loss_scale)

    def _share(self, members: np.ndarray) -> tuple[np.ndarray, float]:
        """This rank's part of one global batch, and the scale that makes its loss count by size."""
        if self.world_size == 1:
            return members, 1.0
        index = members[self.rank :: self.world_size]
        if not len(index):  # every rank must step together: run one image whose loss counts zero
            return members[:1], 0.0
        return index, len(index) * self.world_size / len(members)
