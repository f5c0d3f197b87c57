"""Batches for training and validation, from a `LabelledSet` held in memory.

No DataLoader worker processes: with decoded arrays in memory a batch is an index, a copy
and an augmentation draw. On the CPU that costs far less than the network step
(benchmarks/train_throughput.py), and extra workers would only take cores from the
convolutions. A GPU consumes batches faster than one CPU thread augments them (the
`strong` pipeline makes about 750 256 x 256 images/s on one core here), so on CUDA the
batches are prepared by a pool of threads (albumentations and OpenCV release the GIL), a
few batches ahead. Each batch's order and augmentation draws come from (seed, epoch,
batch), so the batches are the same whatever the number of threads, and a resumed run sees
the same batches as an uninterrupted one.

Under torchrun the sampler is written here rather than taken from torch's
DistributedSampler, which pads the last round with repeated images so every rank gets as
many: here each global batch of `batch_size` images is split between the ranks, every
image is seen exactly once per epoch, and each rank's loss is scaled by its share of the
global batch, so N processes take the same optimiser steps as one process would.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch

from unetkit.data.augment import AugmentConfig, Augmenter, batch_seed, pad_crop
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
                 augment: AugmentConfig | None = None, seed: int = 0, rank: int = 0, world_size: int = 1,
                 workers: int = 0, pad_crop: tuple[int, int] | None = None) -> None:
        """`batch_size` is the global batch: with `world_size` ranks this one takes its share of each.
        `workers` threads prepare batches ahead (0: in the caller's thread). `pad_crop` (pad_to, crop):
        the images are reflect-padded to pad_to and one random crop of crop x crop taken from each."""
        self.data = data
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.workers = workers
        self.pad_crop = pad_crop
        self._local = threading.local()  # one augmenter per thread: a pipeline's random state is its own

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of epoch `epoch` (0-based)."""
        plan = self._plan(epoch)
        if self.workers < 1:
            for step in plan:
                yield self._batch(*step)
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="unetkit-batches") as pool:
            ahead: deque[Future[Batch]] = deque()
            for step in plan:
                ahead.append(pool.submit(self._batch, *step))
                if len(ahead) > 2 * self.workers:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()

    def _plan(self, epoch: int) -> list[tuple[int, int, np.ndarray, float]]:
        """(epoch, batch number, this rank's indices, loss scale) of each batch of the epoch: `_batch`'s arguments."""
        rng = np.random.default_rng((self.seed, epoch))
        order = rng.permutation(len(self.data)) if self.shuffle else np.arange(len(self.data))
        return [(epoch, number, *self._share(order[start : start + self.batch_size]))
                for number, start in enumerate(range(0, len(order), self.batch_size))]

    def _batch(self, epoch: int, number: int, index: np.ndarray, loss_scale: float) -> Batch:
        images, masks = self.data.images[index], self.data.masks[index]
        weights = self.data.weights[index] if self.data.weights is not None else None
        if self.pad_crop is not None:  # its own stream: the augmentation draws stay those of the pad policy
            rng = np.random.default_rng((self.seed, epoch, number, self.rank, 1))
            images, masks, weights = pad_crop(images, masks, weights, *self.pad_crop, rng)
        images, masks, weights = self._augmented(images, masks, weights, epoch, number)
        return self._tensors(images, masks, weights, loss_scale)

    def _augmented(self, images: np.ndarray, masks: np.ndarray, weights: np.ndarray | None, epoch: int,
                   number: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The batch after augmentation (images float32 in [0, 1] then), or as it is without."""
        augmenter = self._augmenter()
        if augmenter is None:
            return images, masks, weights
        # every batch (and every rank) its own draws, whichever thread makes it
        augmenter.reseed(batch_seed(self.seed, epoch, number, self.rank))
        images = images.astype(np.float32) / dtype_range(images.dtype)
        return augmenter(images, masks, weights)

    def _augmenter(self) -> Augmenter | None:
        """This thread's augmenter (a pipeline's random state is its own), None without augmentation."""
        if self.augment is None:
            return None
        augmenter = getattr(self._local, "augmenter", None)
        if augmenter is None:
            augmenter = self._local.augmenter = Augmenter(self.augment)
        return augmenter

    def _tensors(self, images: np.ndarray, masks: np.ndarray, weights: np.ndarray | None, loss_scale: float) -> Batch:
        target = torch.from_numpy(np.ascontiguousarray(masks)).long()
        if target.dim() == 4:  # multi-label (B, H, W, K) -> (B, K, H, W)
            target = target.permute(0, 3, 1, 2).contiguous()
        return Batch(self.preprocess.to_tensor(images), target,
                     torch.from_numpy(np.ascontiguousarray(weights)) if weights is not None else None, loss_scale)

    def _share(self, members: np.ndarray) -> tuple[np.ndarray, float]:
        """This rank's part of one global batch, and the scale that makes its loss count by size."""
        if self.world_size == 1:
            return members, 1.0
        index = members[self.rank :: self.world_size]
        if not len(index):  # every rank must step together: run one image whose loss counts zero
            return members[:1], 0.0
        return index, len(index) * self.world_size / len(members)


def default_workers(device_type: str) -> int:
    """Batch-preparing threads: none on the CPU (its cores run the network); on a GPU the cores
    this process has (torchrun's ranks on one machine share them) less one, at most 8."""
    if device_type != "cuda":
        return 0
    per_process = (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(0, min(8, per_process - 1))
