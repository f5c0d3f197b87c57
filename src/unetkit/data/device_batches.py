"""Training batches cut, augmented and standardised where the network runs, from a set held there.

On a GPU, data/loader.py's ImageSamples make the CPU the bottleneck (a copy, albumentations image by image, the
standardisation, a copy to the device). A decoded training set is small next to GPU memory (TGS: 40 MB), so here it
is copied to the device once, in its stored dtype (uint8 stays 1 byte per pixel), and each batch is an
`index_select`, data/device_augment.py's batch-wide augmentation and `Preprocess.standardise`, all on the device: no
host round trip, and no per-batch copy bigger than the batch's indices and draws. Order and batcher are
ImageSamples' and `Batches`: both paths train on the same images in the same order.
"""

from __future__ import annotations

import numpy as np
import torch

from unetkit.data.augment import AugmentConfig, batch_seed
from unetkit.data.dataset import LabelledSet
from unetkit.data.device_augment import augment_batch, on_device, pad_crop_batch
from unetkit.data.io import dtype_range
from unetkit.data.loader import Batch, ImageSamples
from unetkit.data.preprocess import Preprocess


def stored_on_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A decoded array on `device`, as compact as it came: uint16 rides as int16 bits (torch's uint16
    lacks `index_select` even on the CPU), float16/float64 become float32 (what to_tensor makes of them)."""
    if array.dtype == np.uint16:
        array = array.view(np.int16)
    elif array.dtype == np.uint32 or array.dtype.kind == "f":
        array = array.astype(np.int64 if array.dtype == np.uint32 else np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def to_unit_range(x: torch.Tensor, stored: np.dtype) -> torch.Tensor:
    """Pixels kept by `stored_on_device` for an array of dtype `stored` -> float32 in [0, 1] (for floats: as
    they are), the same operations as `Preprocess.to_tensor`, so the same bits."""
    scale = dtype_range(stored)
    if stored == np.uint16:
        x = x.to(torch.int32).bitwise_and(0xFFFF)
    return x if x.dtype == torch.float32 and scale == 1.0 else x.to(torch.float32) / scale


class DeviceSamples:
    """ImageSamples' images (or pad_crop windows) and order, made on `device` from a copy of `data` held there:
    without augmentation the same batches (to float rounding on a GPU); with it, each batch drawn from (seed, epoch,
    batch, rank) as there, through data/device_augment.py instead of albumentations."""

    def __init__(self, data: LabelledSet, preprocess: Preprocess, *, shuffle: bool, device: torch.device,
                 augment: AugmentConfig | None = None, seed: int = 0, pad_crop: tuple[int, int] | None = None) -> None:
        self.data, self.preprocess, self.augment, self.seed, self.pad_crop = data, preprocess, augment, seed, pad_crop
        host = ImageSamples(data, preprocess, shuffle=shuffle, seed=seed, pad_crop=pad_crop)
        self.order, self.in_order, self.windows = host.order, host.in_order, host.windows  # the same batches as host's
        self.device, self.stored = torch.device(device), data.images.dtype
        self.images = stored_on_device(data.images, self.device)  # (N, H, W, C), stored dtype
        masks = data.masks if data.masks.ndim == 3 else np.moveaxis(data.masks, -1, 1)  # multi-label: (N, K, H, W)
        self.masks = stored_on_device(masks, self.device)
        self.weights = stored_on_device(data.weights, self.device) if data.weights is not None else None
        self.mean = torch.tensor(preprocess.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(preprocess.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.data)

    def batch(self, epoch: int, number: int, keys: np.ndarray, rank: int) -> Batch:
        picked = on_device(torch.from_numpy(np.ascontiguousarray(keys, dtype=np.int64)), self.device)
        images = to_unit_range(self.images.index_select(0, picked), self.stored).permute(0, 3, 1, 2)
        masks = self.masks.index_select(0, picked)
        weights = self.weights.index_select(0, picked) if self.weights is not None else None
        if self.pad_crop is not None:
            windows = (*self.pad_crop, *self.windows(epoch, number, rank, len(keys)))
            images, masks = pad_crop_batch(images, *windows), pad_crop_batch(masks, *windows)
            weights = pad_crop_batch(weights, *windows) if weights is not None else None
        if self.augment is not None:
            images, masks, weights = augment_batch(self.augment, images.contiguous(), masks, weights,
                                                   batch_seed(self.seed, epoch, number, rank))
        return Batch(self.preprocess.standardise(images, self.mean, self.std), masks.long(), weights)


def device_nbytes(data: LabelledSet) -> int:
    """Device memory the set takes (images in their dtype, masks, weights), to decide before copying."""
    kind = data.images.dtype
    itemsize = 4 if kind.kind == "f" else 8 if kind == np.uint32 else kind.itemsize  # as stored_on_device keeps it
    return data.images.size * itemsize + data.masks.nbytes + (data.weights.nbytes if data.weights is not None else 0)
