"""The data fingerprint: sizes, channels, intensities and class shares of known folders, in bounded memory."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.conftest import write_gray_png
from unetkit.data.fingerprint import fingerprint
from unetkit.errors import UserError


def _folder(root: Path, images: list[np.ndarray], masks: list[np.ndarray]) -> Path:
    for i, (image, mask) in enumerate(zip(images, masks)):
        write_gray_png(root / "images" / f"im{i}.png", image)
        write_gray_png(root / "masks" / f"im{i}.png", mask)
    return root


def test_fingerprint_of_a_binary_folder(tmp_path: Path) -> None:
    """Three 40x50 gray images: an 11x11 square (0/255), an empty mask, a 5x20 strip (0/1)."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 50), dtype=np.uint8) for _ in range(3)]
    square, empty, strip = (np.zeros((40, 50), np.uint8) for _ in range(3))
    square[5:16, 5:16] = 255
    strip[10:15, 20:40] = 1
    fp = fingerprint(_folder(tmp_path, images, [square, empty, strip]))
    assert (fp.n_images, fp.size_min, fp.size_median, fp.size_max, fp.same_size) == (3, (40, 50), (40, 50), (40, 50), True)
    assert fp.channels == 1 and fp.dtypes == ("uint8",) and fp.num_classes == 1
    share = (121 + 100) / (3 * 2000)
    assert fp.class_share == pytest.approx((1 - share, share), abs=1e-3)
    assert fp.class_image_share == pytest.approx((1.0, 2 / 3))
    assert fp.foreground_image_share == pytest.approx(2 / 3)
    assert fp.foreground_width == pytest.approx((11 + 5) / 2)  # inscribed diameters 11 and 5
    assert fp.object_size_median == pytest.approx((11 + 20) / 2)  # longer bounding-box sides
    every = np.concatenate([i.ravel() for i in images]).astype(float)  # 6000 pixels < the budget: all sampled
    assert fp.sampled_pixels == 6000
    assert fp.mean[0] == pytest.approx(every.mean(), abs=1e-4) and fp.std[0] == pytest.approx(every.std(), abs=1e-4)
    assert fp.percentile_99_5[0] == pytest.approx(np.percentile(every, 99.5))
    json.dumps(fp.to_dict())


def test_fingerprint_channels_sizes_and_classes(tmp_path: Path) -> None:
    """Mixed sizes; an RGB image with distinct channels makes the folder colour; masks 0/1/2 are 3 classes."""
    from PIL import Image

    rng = np.random.default_rng(1)
    shapes = [(30, 40), (50, 20), (64, 64)]
    masks = []
    for i, (h, w) in enumerate(shapes):
        (tmp_path / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / "images" / f"c{i}.png")
        mask = np.zeros((h, w), np.uint8)
        mask[: h // 2, : w // 2] = 1
        mask[h - 4:, w - 4:] = 2 if i < 2 else 0
        masks.append(mask)
        write_gray_png(tmp_path / "masks" / f"c{i}.png", mask)
    fp = fingerprint(tmp_path)
    assert fp.channels == 3 and len(fp.mean) == 3
    assert (fp.size_min, fp.size_median, fp.size_max, fp.same_size) == ((30, 20), (50, 40), (64, 64), False)
    counts = np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=3)
    assert fp.num_classes == 3
    assert fp.class_share == pytest.approx(tuple(counts / counts.sum()), abs=1e-3)
    assert fp.class_image_share == pytest.approx((1.0, 1.0, 2 / 3))


def test_gray_saved_as_rgb_counts_as_gray(tmp_path: Path) -> None:
    from PIL import Image

    gray = np.random.default_rng(2).integers(0, 256, (20, 20), dtype=np.uint8)
    (tmp_path / "images").mkdir()
    Image.fromarray(np.stack([gray] * 3, axis=2)).save(tmp_path / "images" / "a.png")
    write_gray_png(tmp_path / "masks" / "a.png", (gray > 128).astype(np.uint8) * 255)
    fp = fingerprint(tmp_path)
    assert fp.channels == 1 and fp.mean[0] == pytest.approx(gray.mean(), abs=1e-4)


def test_masks_that_are_neither_binary_nor_indices(tmp_path: Path) -> None:
    image = np.zeros((10, 10), np.uint8)
    mask = np.zeros((10, 10), np.uint8)
    mask[0, :3] = (1, 2, 255)
    with pytest.raises(UserError, match="not a binary|binary encoding"):
        fingerprint(_folder(tmp_path, [image], [mask]), num_classes=1)


def test_large_tiff_fingerprinted_in_bounded_memory(tmp_path: Path) -> None:
    """An 8192 x 8192 uint8 TIFF (64 MiB decoded) and its mask (64 MiB more): traced peak below 24 MiB,
    class shares exact (masks are counted band by band, every row)."""
    side = 8192
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    ramp = (np.arange(side) % 256).astype(np.uint8)
    image = np.broadcast_to(ramp[None, :], (side, side))
    tifffile.imwrite(tmp_path / "images" / "big.tif", image, tile=(256, 256), compression="zlib")
    mask = np.zeros((side, side), np.uint8)
    mask[::64, :] = 255  # thin lines: one row in 64 ...
    mask[::64][:, ::2] = 0  # ... every other pixel of it dropped: one pixel in 128
    mask[1000:1100, 2000:2300] = 255  # and a 100 x 300 block
    expected = float(np.count_nonzero(mask)) / mask.size
    tifffile.imwrite(tmp_path / "masks" / "big.tif", mask, tile=(256, 256), compression="zlib")
    del mask, image
    tracemalloc.start()
    try:
        fp = fingerprint(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 24 * 2**20, f"peak traced memory {peak / 2**20:.1f} MiB"
    assert fp.size_max == (side, side) and fp.channels == 1
    assert fp.class_share[1] == pytest.approx(expected, abs=1e-6)
    assert fp.foreground_width == pytest.approx(1.0)  # single pixels dominate the component count
    assert 0 <= fp.percentile_00_5[0] <= 2 and 253 <= fp.percentile_99_5[0] <= 255  # the ramp, sampled by rows
    assert fp.mean[0] == pytest.approx(127.5, abs=2.0)


def test_top_and_bottom_class_shares_are_compared(tmp_path: Path) -> None:
    """Sky above, road below (class 1 only in the top half, class 2 only in the bottom half): the halves
    share nothing, so their total variation distance is 1; left and right hold the same shares: 0."""
    for i in range(3):
        mask = np.zeros((20, 30), np.uint8)
        mask[:10], mask[10:] = 1, 2
        write_gray_png(tmp_path / "street" / "images" / f"s{i}.png", np.full((20, 30), 99, np.uint8))
        write_gray_png(tmp_path / "street" / "masks" / f"s{i}.png", mask)
    found = fingerprint(tmp_path / "street", num_classes=3)
    assert (found.up_down_difference, found.left_right_difference) == (1.0, 0.0)


def test_a_band_read_mask_measures_its_halves_like_a_whole_one(tmp_path: Path) -> None:
    """A 3000 x 2000 TIFF mask read in bands: foreground in the top quarter only, so the top half holds
    it at a share of 0.5 and the bottom half none: a distance of 0.5 (0 between left and right)."""
    mask = np.zeros((3000, 2000), np.uint8)
    mask[:750] = 255
    (tmp_path / "big" / "images").mkdir(parents=True)
    (tmp_path / "big" / "masks").mkdir(parents=True)
    tifffile.imwrite(tmp_path / "big" / "images" / "b.tif", np.full((3000, 2000), 7, np.uint8))
    tifffile.imwrite(tmp_path / "big" / "masks" / "b.tif", mask)
    found = fingerprint(tmp_path / "big")
    assert found.up_down_difference == pytest.approx(0.5) and found.left_right_difference == 0.0


def test_masks_measured_as_one_stack_give_what_one_at_a_time_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twelve 64x80 masks: random blobs (many touching the border), an empty mask, a checkerboard of 2560 one-pixel
    components (over MAX_COMPONENTS: a random subset is drawn) and two 16-bit 0/65535 TIFFs. Measured as one stack
    and as stacks of one mask, every figure is the same, random samples included."""
    import unetkit.data.fingerprint as module

    rng = np.random.default_rng(3)
    masks = [(rng.random((64, 80)) > 0.6).astype(np.uint8) * 255 for _ in range(8)]
    masks += [np.zeros((64, 80), np.uint8), (np.indices((64, 80)).sum(axis=0) % 2).astype(np.uint8)]
    for i, mask in enumerate(masks):
        write_gray_png(tmp_path / "images" / f"m{i:02d}.png", rng.integers(0, 256, (64, 80), dtype=np.uint8))
        write_gray_png(tmp_path / "masks" / f"m{i:02d}.png", mask)
    for i in range(2):  # 16-bit masks are stored as TIFF
        tifffile.imwrite(tmp_path / "images" / f"w{i}.tif", rng.integers(0, 256, (64, 80), dtype=np.uint8))
        tifffile.imwrite(tmp_path / "masks" / f"w{i}.tif", (rng.random((64, 80)) > 0.5).astype(np.uint16) * 65535)
    monkeypatch.setattr(module, "SAMPLE_BUDGET", 0)  # 256 random pixels per image: the draws' order shows in the mean
    stacked = fingerprint(tmp_path)
    monkeypatch.setattr(module, "STACK_PIXELS", 64 * 80)  # every mask is a stack of its own
    alone = fingerprint(tmp_path)
    assert stacked.to_dict() == alone.to_dict()
    assert stacked.n_images == 12 and stacked.num_classes == 1 and stacked.object_size_median is not None
