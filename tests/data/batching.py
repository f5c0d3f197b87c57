"""The three sample sources behind `Batches`, each composed as training/loop.py composes it, for the tests."""

from __future__ import annotations

from typing import Any

from unetkit.data.device_batches import DeviceSamples
from unetkit.data.loader import Batches, ImageSamples
from unetkit.data.patch_batches import PatchSamples


def image_batches(data: Any, preprocess: Any, batch_size: int, *, rank: int = 0, world_size: int = 1,
                  workers: int = 0, **sampled: Any) -> Batches:
    return Batches(ImageSamples(data, preprocess, **sampled), batch_size, rank=rank, world_size=world_size,
                   workers=workers)


def device_batches(data: Any, preprocess: Any, batch_size: int, *, rank: int = 0, world_size: int = 1,
                   **sampled: Any) -> Batches:
    return Batches(DeviceSamples(data, preprocess, **sampled), batch_size, rank=rank, world_size=world_size)


def patch_batches(data: Any, preprocess: Any, batch_size: int, *, rank: int = 0, world_size: int = 1,
                  workers: int = 0, **sampled: Any) -> Batches:
    return Batches(PatchSamples(data, preprocess, batch_size, **sampled), batch_size, rank=rank,
                   world_size=world_size, workers=workers)
