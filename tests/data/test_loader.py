"""The batch sampler: global batches split between torchrun ranks, every image once per epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.data.batching import image_batches
from unetkit.data.dataset import LabelledSet
from unetkit.data.preprocess import identity_preprocess


def numbered_set(n: int) -> LabelledSet:
    """n 2x2 float images whose pixels hold their own index, so a batch tells which images it holds."""
    images = np.repeat(np.arange(n, dtype=np.float32), 4).reshape(n, 2, 2, 1)
    return LabelledSet([str(i) for i in range(n)], images, np.zeros((n, 2, 2), np.uint8), [])


def indices(batch) -> list[int]:
    return [int(v) for v in batch.images[:, 0, 0, 0]]


@pytest.mark.parametrize(("n", "batch_size", "world_size"), [(11, 4, 2), (9, 4, 2), (10, 4, 3), (7, 8, 3), (5, 2, 4)])
def test_ranks_cover_every_image_once_and_rebuild_the_single_process_batches(n: int, batch_size: int,
                                                                                 world_size: int) -> None:
    data = numbered_set(n)
    single = [indices(b) for b in image_batches(data, identity_preprocess(1), batch_size, shuffle=True,
                                                seed=5).epoch(2)]
    ranks = [list(image_batches(data, identity_preprocess(1), batch_size, shuffle=True, seed=5, rank=r,
                                world_size=world_size).epoch(2)) for r in range(world_size)]
    assert {len(batches) for batches in ranks} == {len(single)}  # every rank takes the same number of steps
    seen: list[int] = []
    for step, global_batch in enumerate(single):
        parts = [batches[step] for batches in ranks]
        counted = [indices(p) for p in parts if p.loss_scale > 0]
        assert sorted(i for part in counted for i in part) == sorted(global_batch)
        # DDP averages the ranks' gradients: each counted image must weigh 1/len(global batch), as in one process
        for part in parts:
            if part.loss_scale:
                assert part.loss_scale / (world_size * len(part.images)) == pytest.approx(1 / len(global_batch))
        seen += global_batch
    assert sorted(seen) == list(range(n))


def test_one_process_batches_are_unchanged_by_the_sampler() -> None:
    data = numbered_set(10)
    batches = list(image_batches(data, identity_preprocess(1), 4, shuffle=False).epoch(0))
    assert [indices(b) for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert {b.loss_scale for b in batches} == {1.0}


def test_threads_prepare_exactly_the_batches_of_the_callers_thread() -> None:
    from unetkit.data.augment import augment_config

    rng = np.random.default_rng(0)
    data = LabelledSet([str(i) for i in range(21)], rng.integers(0, 255, (21, 24, 24, 1), dtype=np.uint8),
                       (rng.random((21, 24, 24)) > 0.5).astype(np.uint8), [])
    strong = augment_config("strong")  # elastic, affine, noise...: random draws on every image
    serial = list(image_batches(data, identity_preprocess(1), 4, shuffle=True, augment=strong, seed=2).epoch(1))
    threaded = list(image_batches(data, identity_preprocess(1), 4, shuffle=True, augment=strong, seed=2,
                                  workers=3).epoch(1))
    assert len(serial) == len(threaded) == 6
    for a, b in zip(serial, threaded):
        assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    other_epoch = next(iter(image_batches(data, identity_preprocess(1), 4, shuffle=True, augment=strong,
                                          seed=2).epoch(2)))
    assert not torch.equal(other_epoch.images, serial[0].images)


def test_threads_only_where_a_gpu_waits_for_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    from unetkit.data.loader import default_workers

    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert default_workers("cpu") == 0
    assert default_workers("cuda") == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: four ranks share the machine's cores
    assert default_workers("cuda") == 3


def test_pad_crop_pads_by_reflection_and_crops_one_window_per_image() -> None:
    from unetkit.data.augment import crop_windows, pad_crop

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 101, 101, 1), dtype=np.uint8)
    masks = (images[..., 0] > 127).astype(np.uint8)
    out_images, out_masks, out_weights = pad_crop(images, masks, None, 148, 128,
                                                  *crop_windows(3, 148, 128, np.random.default_rng(4)))
    assert out_images.shape == (3, 128, 128, 1) and out_masks.shape == (3, 128, 128) and out_weights is None
    assert np.array_equal(out_masks, (out_images[..., 0] > 127).astype(np.uint8))  # one window for image and mask
    padded = np.pad(images[0, :, :, 0], ((23, 24), (23, 24)), mode="reflect")  # 101 -> 148, centred
    window = out_images[0, :, :, 0]
    found = [(y, x) for y in range(21) for x in range(21) if np.array_equal(padded[y : y + 128, x : x + 128], window)]
    assert len(found) == 1


def test_pad_crop_batches_are_reproducible_and_change_by_epoch() -> None:
    rng = np.random.default_rng(1)
    data = LabelledSet([str(i) for i in range(4)], rng.random((4, 20, 20, 1), dtype=np.float32),
                       np.zeros((4, 20, 20), np.uint8), [])

    def first_batch(epoch: int) -> torch.Tensor:
        return next(image_batches(data, identity_preprocess(1), 4, shuffle=False, pad_crop=(30, 16)).epoch(epoch)).images

    assert first_batch(0).shape == (4, 1, 16, 16)
    assert torch.equal(first_batch(0), first_batch(0)) and not torch.equal(first_batch(0), first_batch(1))
