"""Patch batches: shapes, determinism by (seed, epoch, batch, patch), torchrun shares, foreground share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.data.batching import patch_batches
from unetkit.data.augment import PRESETS
from unetkit.data.dataset import Pair
from unetkit.data.loader import Batches
from unetkit.data.patch_set import PatchSet
from unetkit.data.patches import ArraySource, scan_mask
from unetkit.data.preprocess import identity_preprocess
from unetkit.data.synthetic import synthetic_large
from unetkit.data.weights import border_weights


def _patch_set(sizes: tuple[int, ...] = (300, 180, 97)) -> PatchSet:
    sources = [ArraySource(image[:, :, None], mask) for image, mask in
               (synthetic_large(i, side=side) for i, side in enumerate(sizes))]
    rng = np.random.default_rng(0)
    scanned = [scan_mask(source, (1,), rng) for source in sources]
    stems = [f"s{i}" for i in range(len(sizes))]
    pairs = [Pair(stem, None, None) for stem in stems]  # type: ignore[arg-type]
    return PatchSet(stems, pairs, sources, np.stack([c for _, c in scanned]), [f for f, _ in scanned], (1,))


def _batches(data: PatchSet, **options: object) -> Batches:
    settings: dict = {"patch_size": 64, "foreground_share": 0.5, "seed": 4} | options
    return patch_batches(data, identity_preprocess(1), 6, **settings)


@pytest.mark.parametrize("augment", ["none", "seed", "strong"])
def test_shapes_count_and_determinism(augment: str) -> None:
    """Epochs of 20 patches in batches of 6 (6, 6, 6, 2) of 64 x 64; the same epoch twice is the same tensors,
    another epoch differs; the strong preset's warps read a margin that is cut away again."""
    batches = _batches(_patch_set(), patches_per_epoch=20, augment=PRESETS[augment])
    assert len(batches) == 4
    first = list(batches.epoch(0))
    assert [tuple(b.images.shape) for b in first] == [(6, 1, 64, 64)] * 3 + [(2, 1, 64, 64)]
    assert first[0].masks.shape == (6, 64, 64) and first[0].masks.dtype == torch.int64
    assert (batches.samples.sampler.margin > 0) == (augment == "strong")
    again = list(batches.epoch(0))
    assert all(torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks) for a, b in zip(first, again))
    assert not torch.equal(first[0].images, next(iter(batches.epoch(1))).images)


def test_auto_epoch_is_the_pixels_over_a_patch() -> None:
    """300^2 + 180^2 + 97^2 = 131,809 px over 64^2 = 33 patches -> 6 batches of 6."""
    batches = _batches(_patch_set())
    assert batches.samples.patches_per_epoch == 33 and len(batches) == 6


@pytest.mark.parametrize(("ranks", "size"), [(2, 6), (3, 6), (4, 3)])
def test_ranks_together_draw_the_single_process_batch(ranks: int, size: int) -> None:
    """Rank r takes positions r, r + N, ... of each global batch; together they are one process's batch,
    and each loss scale is its share of the global batch times N."""
    data = _patch_set()
    single = list(_batches(data, patches_per_epoch=size).epoch(0))[0]
    shares = [list(_batches(data, patches_per_epoch=size, rank=r, world_size=ranks).epoch(0))[0] for r in range(ranks)]
    for rank, share in enumerate(shares):
        positions = np.arange(rank, size, ranks)
        if not len(positions):  # a rank left without a patch steps on a stand-in whose loss counts zero
            assert share.loss_scale == 0.0 and len(share.images) == 1
            continue
        assert torch.equal(share.images, single.images[positions]) and torch.equal(share.masks, single.masks[positions])
        assert share.loss_scale == pytest.approx(len(positions) * ranks / size)


def test_forced_patches_are_centred_on_foreground() -> None:
    """foreground_share 0.5 of 6: the first 3 patches of every batch hold foreground, at the centre unless the
    patch was moved inside the image (no warp); the other 3 land anywhere."""
    batches = _batches(_patch_set((400,)), patches_per_epoch=60)
    forced = torch.cat([batch.masks[:3] for batch in batches.epoch(0)])
    assert forced.flatten(1).any(1).all()
    assert (forced[:, 32, 32] == 1).float().mean() >= 0.8


def test_border_weights_are_made_per_patch() -> None:
    """weighted_ce's map from the patch's mask: equal to border_weights of the mask as drawn."""
    batches = _batches(_patch_set(), patches_per_epoch=6, weight_map=border_weights)
    batch = next(iter(batches.epoch(0)))
    assert batch.weights is not None and batch.weights.shape == (6, 64, 64)
    expected = np.stack([border_weights(m.numpy().astype(np.uint8)) for m in batch.masks])
    assert np.allclose(batch.weights.numpy(), expected)
