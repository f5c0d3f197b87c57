"""device_batches: image_batches' batches, cut and standardised on the tensors' device (here the CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.data.batching import device_batches, image_batches
from unetkit.data.augment import augment_config
from unetkit.data.dataset import LabelledSet
from unetkit.data.device_batches import device_nbytes, stored_on_device, to_unit_range
from unetkit.data.preprocess import Preprocess, identity_preprocess

CPU = torch.device("cpu")
SHAPES = [(11, 4, 2), (9, 4, 2), (10, 4, 3), (7, 8, 3), (5, 2, 4)]


def numbered_set(n: int) -> LabelledSet:
    """n 2x2 float images whose pixels hold their own index (tests/data/test_loader.py's)."""
    images = np.repeat(np.arange(n, dtype=np.float32), 4).reshape(n, 2, 2, 1)
    return LabelledSet([str(i) for i in range(n)], images, np.zeros((n, 2, 2), np.uint8), [])


def random_set(n: int, dtype: type, *, channels: int = 3, size: int = 12, multilabel: bool = False,
               weights: bool = True) -> LabelledSet:
    rng = np.random.default_rng(n)
    if np.issubdtype(dtype, np.integer):
        images = rng.integers(0, np.iinfo(dtype).max, (n, size, size, channels), endpoint=True).astype(dtype)
    else:
        images = rng.random((n, size, size, channels)).astype(dtype)
    shape = (n, size, size, 2) if multilabel else (n, size, size)
    masks = rng.integers(0, 2 if multilabel else 4, shape).astype(np.uint8)
    return LabelledSet([str(i) for i in range(n)], images, masks, [],
                       rng.random((n, size, size)).astype(np.float32) if weights else None)


@pytest.mark.parametrize(("n", "batch_size", "world_size"), SHAPES)
def test_plans_exactly_the_batches_and_shares_of_batch_iterator(n: int, batch_size: int, world_size: int) -> None:
    data = numbered_set(n)
    for rank in range(world_size):
        for epoch in range(3):
            ours = list(device_batches(data, identity_preprocess(1), batch_size, shuffle=True, device=CPU, seed=5,
                                      rank=rank, world_size=world_size).epoch(epoch))
            theirs = list(image_batches(data, identity_preprocess(1), batch_size, shuffle=True, seed=5, rank=rank,
                                        world_size=world_size).epoch(epoch))
            assert len(ours) == len(theirs) == -(-n // batch_size)
            for a, b in zip(ours, theirs):
                assert a.images[:, 0, 0, 0].tolist() == b.images[:, 0, 0, 0].tolist()  # the same images, in order
                assert a.loss_scale == b.loss_scale  # 0.0 for a stand-in share, like image_batches'


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize(("n", "batch_size", "world_size"), [(11, 4, 1), (10, 4, 3), (7, 8, 3)])
@pytest.mark.parametrize("pad_crop", [None, (16, 10)])
def test_yields_the_tensors_of_batch_iterator_without_augmentation(dtype: type, n: int, batch_size: int,
                                                                     world_size: int, pad_crop: tuple | None) -> None:
    """pad_crop (12 px padded to 16, crops of 10): the device cuts the windows the host loader cuts."""
    data = random_set(n, dtype, multilabel=dtype == np.float32)
    preprocess = Preprocess((0.2, 0.5, 0.4), (0.3, 0.1, 0.25))
    for rank in range(world_size):
        ours = list(device_batches(data, preprocess, batch_size, shuffle=True, device=CPU, seed=1, rank=rank,
                                  world_size=world_size, pad_crop=pad_crop).epoch(4))
        theirs = list(image_batches(data, preprocess, batch_size, shuffle=True, seed=1, rank=rank,
                                    world_size=world_size, pad_crop=pad_crop).epoch(4))
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert a.images.shape == b.images.shape and a.images.dtype == torch.float32
            assert float((a.images - b.images).abs().max()) <= 1e-6  # Preprocess.to_tensor's values
            assert a.masks.dtype == torch.int64 and torch.equal(a.masks, b.masks)
            assert torch.equal(a.weights, b.weights) and a.loss_scale == b.loss_scale


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_standardising_on_the_device_matches_to_tensor_with_both_size_policies(dtype: type) -> None:
    images = random_set(3, dtype, size=20).images
    for preprocess in (Preprocess((0.1, 0.2, 0.3), (0.5, 0.6, 0.7)),
                       Preprocess((0.1, 0.2, 0.3), (0.5, 0.6, 0.7), size_policy="resize", resize_to=16)):
        mean = torch.tensor(preprocess.mean).view(1, -1, 1, 1)
        std = torch.tensor(preprocess.std).view(1, -1, 1, 1)
        ours = preprocess.standardise(to_unit_range(stored_on_device(images, CPU), images.dtype).permute(0, 3, 1, 2),
                                      mean, std)
        theirs = preprocess.to_tensor(images)
        assert ours.shape == theirs.shape
        assert float((ours - theirs).abs().max()) <= 1e-6


def test_the_set_stays_in_its_stored_dtype_until_a_batch_is_made() -> None:
    data = random_set(4, np.uint16)
    data.images[0, 0, 0, 0] = 65535  # the top of the range survives the int16 bits
    batches = device_batches(data, identity_preprocess(3), 4, shuffle=False, device=CPU)
    assert batches.samples.images.dtype == torch.int16 and batches.samples.images.shape == (4, 12, 12, 3)
    assert float(next(iter(batches.epoch(0))).images[0, 0, 0, 0]) == 1.0
    assert device_batches(random_set(4, np.uint8), identity_preprocess(3), 4, shuffle=False,
                          device=CPU).samples.images.dtype == torch.uint8
    assert device_nbytes(data) == data.images.nbytes + data.masks.nbytes + data.weights.nbytes


def test_augmented_batches_repeat_per_seed_and_epoch_and_keep_valid_masks() -> None:
    data = random_set(21, np.uint8, channels=1, size=24)
    strong = augment_config("strong")

    def epoch(number: int, seed: int = 2) -> list:
        return list(device_batches(data, identity_preprocess(1), 4, shuffle=True, device=CPU, augment=strong,
                                  seed=seed).epoch(number))

    first, again = epoch(1), epoch(1)
    assert len(first) == 6
    for a, b in zip(first, again):
        assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks) and torch.equal(a.weights, b.weights)
        assert set(a.masks.unique().tolist()) <= {0, 1, 2, 3}
    assert not torch.equal(epoch(2)[0].images, first[0].images)
    assert not torch.equal(epoch(1, seed=3)[0].images, first[0].images)
