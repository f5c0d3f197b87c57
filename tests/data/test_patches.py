"""Patch sampling: shapes at odd sizes, reflection, foreground share, class balance, region reads."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile

from tests.conftest import write_gray_png
from unetkit.data.dataset import Pair
from unetkit.data.patches import ArraySource, FileSource, PatchSampler, scan_mask


def _source(h: int, w: int, seed: int = 0, classes: int = 2) -> ArraySource:
    rng = np.random.default_rng(seed)
    return ArraySource(rng.integers(0, 256, (h, w, 1), dtype=np.uint8),
                       rng.integers(0, classes, (h, w), dtype=np.uint8))


def _sampler(sources: list, patch: int, *, classes: tuple[int, ...] = (1,), seed: int = 0, **kwargs: float) -> PatchSampler:
    """A sampler over `sources`, their classes located as patch_set_of locates them (draws from `seed`)."""
    rng = np.random.default_rng(seed)
    return PatchSampler(sources, patch, classes=classes, locations=[scan_mask(s, classes, rng)[0] for s in sources],
                        **kwargs)


def _batch(sampler: PatchSampler, rng: np.random.Generator, n: int) -> SimpleNamespace:
    """n patches as the training batches draw them: the first `sampler.forced(n)` centred on a class."""
    drawn = [sampler.draw(rng, i < sampler.forced(n)) for i in range(n)]
    images, masks, sources, origins, centred = zip(*drawn)
    return SimpleNamespace(images=np.stack(images), masks=np.stack(masks), sources=np.array(sources),
                           origins=np.array(origins), centred=np.array(centred))


@pytest.mark.parametrize("shape", [(37, 50), (101, 101), (300, 517)])
@pytest.mark.parametrize(("patch", "margin"), [(64, 0), (64, 12), (128, 20)])
def test_patch_shapes_at_odd_sizes(shape: tuple[int, int], patch: int, margin: int) -> None:
    """(patch + 2 * margin) squares whatever the image size, smaller images included."""
    sampler = _sampler([_source(*shape)], patch, foreground_share=0.5, margin=margin)
    batch = _batch(sampler, np.random.default_rng(0), 6)
    side = patch + 2 * margin
    assert batch.images.shape == (6, side, side, 1) and batch.masks.shape == (6, side, side)
    assert batch.images.dtype == np.uint8 and sampler.margin == margin
    assert (batch.centred[:3] == 1).all() and (batch.centred[3:] == -1).all()


def test_reflection_equals_numpy_pad_and_keeps_labels() -> None:
    """A 37 x 50 image in 64-px patches with margin 10: the window equals numpy's reflect-padded image, cropped."""
    source = _source(37, 50, classes=3)
    sampler = _sampler([source], 64, classes=(1, 2), margin=10)
    rng = np.random.default_rng(3)
    for _ in range(20):
        image, mask, _, (y, x), _ = sampler.draw(rng, False)
        pad = 200
        padded_image = np.pad(source.image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
        padded_mask = np.pad(source.mask, pad, mode="reflect")
        window = np.s_[y - 10 + pad: y + 74 + pad, x - 10 + pad: x + 74 + pad]
        np.testing.assert_array_equal(image, padded_image[window])
        np.testing.assert_array_equal(mask, padded_mask[window])
        assert set(np.unique(mask)) <= {0, 1, 2}


def test_foreground_share_is_met() -> None:
    """Foreground in 0.1% of pixels; 0.33 requested: at least 33% of 300 patches hold foreground in their inner crop."""
    sources = []
    for seed in range(4):
        mask = np.zeros((300, 517), np.uint8)
        rng = np.random.default_rng(seed)
        y, x = rng.integers(0, 290), rng.integers(0, 507)
        mask[y:y + 10, x:x + 15] = 1  # 150 of 155100 pixels
        sources.append(ArraySource(np.zeros((300, 517, 1), np.uint8), mask))
    sampler = _sampler(sources, 64, foreground_share=0.33, margin=8)
    rng = np.random.default_rng(0)
    held = []
    for _ in range(10):
        batch = _batch(sampler, rng, 30)
        held += [bool(m[8:-8, 8:-8].any()) for m in batch.masks]
    assert len(held) == 300
    assert np.mean(held) >= 0.33


def test_class_balanced_sampling_visits_every_class() -> None:
    """Class 3 occupies 4 pixels of one image of four; forced patches centre on classes 1, 2, 3 about equally."""
    sources = []
    for seed in range(4):
        mask = np.zeros((120, 90), np.uint8)
        mask[:60] = 1
        mask[100:, :30] = 2
        if seed == 2:
            mask[70:72, 70:72] = 3
        sources.append(ArraySource(np.zeros((120, 90, 3), np.uint8), mask))
    sampler = _sampler(sources, 32, classes=(1, 2, 3), foreground_share=1.0)
    batch = _batch(sampler, np.random.default_rng(5), 300)
    counts = np.bincount(batch.centred, minlength=4)[1:]
    assert (counts >= 70).all(), counts  # 100 each expected
    inner = batch.masks[batch.centred == 3]
    assert all((m == 3).any() for m in inner) and (batch.sources[batch.centred == 3] == 2).all()


def test_same_generator_same_patches() -> None:
    sampler = _sampler([_source(101, 101), _source(300, 517, seed=1)], 64, margin=4)
    first = _batch(sampler, np.random.default_rng(11), 8)
    second = _batch(sampler, np.random.default_rng(11), 8)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.origins, second.origins)


@pytest.mark.parametrize("mask_suffix", [".tif", ".png"])
def test_file_source_reads_regions_like_memory(tmp_path: Path, mask_suffix: str) -> None:
    """A 300 x 517 RGB TIFF read by region (mask as TIFF by region, or PNG decoded whole) gives the
    patches of the same arrays held in memory."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 65535, (300, 517, 3), dtype=np.uint16)
    mask = np.zeros((300, 517), np.uint8)
    mask[100:140, 200:260] = 255
    tifffile.imwrite(tmp_path / "a.tif", image, tile=(64, 64))
    if mask_suffix == ".tif":
        tifffile.imwrite(tmp_path / "m.tif", mask, tile=(64, 64))
    else:
        write_gray_png(tmp_path / "m.png", mask)
    disk = FileSource(Pair("a", tmp_path / "a.tif", tmp_path / f"m{mask_suffix}"), channels=3, num_classes=1)
    memory = ArraySource(image, (mask > 0).astype(np.uint8))
    on_disk = _batch(_sampler([disk], 96, margin=16, seed=1), np.random.default_rng(2), 6)
    in_memory = _batch(_sampler([memory], 96, margin=16, seed=1), np.random.default_rng(2), 6)
    np.testing.assert_array_equal(on_disk.images, in_memory.images)
    np.testing.assert_array_equal(on_disk.masks, in_memory.masks)
    assert on_disk.masks[on_disk.centred == 1][:, 16:-16, 16:-16].any(axis=(1, 2)).all()


def test_large_tiff_patches_in_bounded_memory(tmp_path: Path) -> None:
    """A 4096 x 4096 RGB TIFF (48 MiB decoded) with a TIFF mask (16 MiB): locating the foreground and
    sampling 16 patches of 256 + 2 * 64 px peaks under 24 MiB traced, of which the batch itself is 9.4 MiB."""
    import tracemalloc

    side = 4096
    ramp = (np.arange(side) % 251).astype(np.uint8)
    image = np.broadcast_to(ramp[None, :, None], (side, side, 3))
    tifffile.imwrite(tmp_path / "big.tif", image, tile=(256, 256), compression="zlib")
    mask = np.zeros((side, side), np.uint8)
    mask[2000:2010, :] = 255
    tifffile.imwrite(tmp_path / "big_mask.tif", mask, tile=(256, 256), compression="zlib")
    del image, mask
    tracemalloc.start()
    try:
        source = FileSource(Pair("big", tmp_path / "big.tif", tmp_path / "big_mask.tif"), channels=3, num_classes=1)
        batch = _batch(_sampler([source], 256, margin=64, foreground_share=0.5), np.random.default_rng(0), 16)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 24 * 2**20, f"peak traced memory {peak / 2**20:.1f} MiB"
    assert batch.images.shape == (16, 384, 384, 3)
    assert batch.masks[:8, 64:-64, 64:-64].any(axis=(1, 2)).all()
