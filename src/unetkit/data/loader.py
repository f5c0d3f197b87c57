"""Batches for training: the one batcher (`Batches`) over a kind of `Samples`, and whole images in host memory.

No DataLoader worker processes: with decoded arrays in memory a batch is an index, a copy and an augmentation draw, far
cheaper on the CPU than the network step (benchmarks/train_throughput.py), and workers would take cores from the
convolutions. A GPU consumes batches faster than one CPU thread augments them, so on CUDA a pool of threads
(albumentations and OpenCV release the GIL) prepares a few batches ahead. Each batch's order and draws come from (seed,
epoch, batch), so the batches are the same whatever the number of threads, and a resumed run sees those of an
uninterrupted one.

Under torchrun each global batch of `batch_size` images is split between the ranks, where torch's DistributedSampler
pads the last round with repeated images: every image is seen once per epoch and each rank's loss is scaled by its
share, so N processes take the optimiser steps one process would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NamedTuple, Protocol

import numpy as np
import torch

from unetkit.data.augment import AugmentConfig, Augmenter, batch_seed, crop_windows, pad_crop
from unetkit.data.dataset import LabelledSet
from unetkit.data.io import dtype_range
from unetkit.data.preprocess import Preprocess
from unetkit.data.read_ahead import in_order


class Batch(NamedTuple):
    """images (B, C, H, W) float32, masks (B, H, W) int64 (multi-label: (B, K, H, W)), weights or None;
    loss_scale: this rank's images over the global batch's, times the number of ranks (1.0 for one process;
    0.0: a stand-in batch for a rank the last global batch left without images)."""

    images: torch.Tensor
    masks: torch.Tensor
    weights: torch.Tensor | None
    loss_scale: float = 1.0


class Samples(Protocol):
    """A kind of training sample (whole images, patches) behind the one batcher. Every draw is a function of
    (seed, epoch, batch number, rank) and the keys alone, never of the thread or of earlier draws."""

    def __len__(self) -> int: ...  # samples per epoch
    def order(self, epoch: int) -> np.ndarray: ...  # the epoch's keys, cut into global batches in this order
    def batch(self, epoch: int, number: int, keys: np.ndarray, rank: int) -> Batch: ...  # rank's share `keys`
    def in_order(self) -> Samples: ...  # SWA's batch-norm statistics: whole images in order, unaugmented; patches as drawn


class Batches:
    """The one batcher: a `Samples` cut into global batches, each shared between torchrun's ranks, made in the
    caller's thread or `workers` threads ahead (the samples' own placement: host arrays or device tensors)."""

    def __init__(self, samples: Samples, batch_size: int, *, rank: int = 0, world_size: int = 1, workers: int = 0) -> None:
        """`batch_size` is the global batch: with `world_size` ranks this one takes its share of each."""
        self.samples, self.batch_size, self.rank, self.world_size, self.workers = samples, batch_size, rank, world_size, workers

    def __len__(self) -> int:
        return -(-len(self.samples) // self.batch_size)

    def in_order(self) -> Batches:
        """One process's batches of `Samples.in_order`, made in the caller's thread."""
        return Batches(self.samples.in_order(), self.batch_size)

    def epoch(self, epoch: int) -> Iterator[Batch]:  # epochs count from 0
        order = self.samples.order(epoch)
        plan = [(epoch, number, *self._share(order[start : start + self.batch_size]))
                for number, start in enumerate(range(0, len(order), self.batch_size))]
        yield from (map(self._make, plan) if self.workers < 1
                    else in_order(self._make, plan, workers=self.workers, ahead=2 * self.workers))

    def _make(self, step: tuple[int, int, np.ndarray, float]) -> Batch:
        """A batch of the epoch's plan: (epoch, batch number, this rank's keys, loss scale)."""
        return self.samples.batch(*step[:3], self.rank)._replace(loss_scale=step[3])

    def _share(self, members: np.ndarray) -> tuple[np.ndarray, float]:
        """This rank's part of one global batch, and the scale that makes its loss count by size."""
        index = members[self.rank :: self.world_size]
        if not len(index):  # every rank must step together: run one image whose loss counts zero
            return members[:1], 0.0
        return index, len(index) * self.world_size / len(members)


class ImageSamples:
    """Whole images of a LabelledSet held in host memory, augmented by albumentations per batch and rank."""

    def __init__(self, data: LabelledSet, preprocess: Preprocess, *, shuffle: bool, augment: AugmentConfig | None = None,
                 seed: int = 0, pad_crop: tuple[int, int] | None = None) -> None:
        """`pad_crop` (pad_to, crop): one random crop x crop window of each image reflect-padded to pad_to."""
        self.data, self.preprocess, self.shuffle, self.seed, self.pad_crop = data, preprocess, shuffle, seed, pad_crop
        self.augment = Augmenter(augment) if augment is not None else None

    def __len__(self) -> int:
        return len(self.data)

    def order(self, epoch: int) -> np.ndarray:  # a permutation drawn from (seed, epoch), or 0..n-1
        return np.random.default_rng((self.seed, epoch)).permutation(len(self)) if self.shuffle else np.arange(len(self))

    def batch(self, epoch: int, number: int, keys: np.ndarray, rank: int) -> Batch:
        images, masks = self.data.images[keys], self.data.masks[keys]
        weights = self.data.weights[keys] if self.data.weights is not None else None
        if self.pad_crop is not None:
            windows = self.windows(epoch, number, rank, len(keys))
            images, masks, weights = pad_crop(images, masks, weights, *self.pad_crop, *windows)
        if self.augment is not None:  # every batch (and every rank) its own draws, whichever thread makes it
            images = images.astype(np.float32) / dtype_range(images.dtype)
            images, masks, weights = self.augment(images, masks, weights, batch_seed(self.seed, epoch, number, rank))
        return host_batch(self.preprocess, images, masks, weights)

    def in_order(self) -> ImageSamples:
        return ImageSamples(self.data, self.preprocess, shuffle=False)

    def windows(self, epoch: int, number: int, rank: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """A batch's pad_crop windows, from their own stream: the augmentation draws stay those of the pad policy."""
        return crop_windows(n, *self.pad_crop, np.random.default_rng((self.seed, epoch, number, rank, 1)))


def host_batch(preprocess: Preprocess, images: np.ndarray, masks: np.ndarray, weights: np.ndarray | None) -> Batch:
    """Host arrays as a Batch: images standardised by `preprocess`, masks as int64 ((B, K, H, W) for multi-label)."""
    target = torch.from_numpy(np.ascontiguousarray(masks)).long()
    if target.dim() == 4:  # multi-label (B, H, W, K) -> (B, K, H, W)
        target = target.permute(0, 3, 1, 2).contiguous()
    return Batch(preprocess.to_tensor(images), target,
                 torch.from_numpy(np.ascontiguousarray(weights)) if weights is not None else None)


def default_workers(device_type: str) -> int:
    """Batch-preparing threads: none on the CPU (its cores run the network); on a GPU the cores
    this process has (torchrun's ranks on one machine share them) less one, at most 8."""
    per_process = (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if device_type == "cuda" else 1
    return max(0, min(8, per_process - 1))
