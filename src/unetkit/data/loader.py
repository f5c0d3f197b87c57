"""Batches for training and validation, from a `LabelledSet` held in memory.

No DataLoader workers: with decoded arrays in memory a batch is an index, a copy and a
flip, which costs far less than the network step, so worker processes would only take
CPU cores from the convolutions. Each epoch's order and flips come from (seed, epoch),
so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from unetkit.data.augment import random_hflip
from unetkit.data.dataset import LabelledSet
from unetkit.data.preprocess import Preprocess


class BatchIterator:
    """Yields (images (B, C, H, W) float32, masks (B, H, W) int64) batches."""

    def __init__(self, data: LabelledSet, preprocess: Preprocess, batch_size: int, *, shuffle: bool,
                 augment: str = "none", seed: int = 0) -> None:
        self.data = data
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of epoch `epoch` (0-based)."""
        rng = np.random.default_rng((self.seed, epoch))
        order = rng.permutation(len(self.data)) if self.shuffle else np.arange(len(self.data))
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            images = self.preprocess.to_tensor(self.data.images[index])
            masks = torch.from_numpy(self.data.masks[index]).long()
            if self.augment == "seed":
                images, masks = random_hflip(images, masks, rng)
            yield images, masks
