"""Patches for training: random crops, a share of them centred on foreground, from images of any size.

The U-Net paper trained on tiles cut from large images; nnU-Net samples patches and forces a share of them onto
foreground, or rare classes would hardly be seen. `PatchSampler` does that over `ArraySource`s (decoded in memory) and
`FileSource`s (large TIFF/.npy images read by region through data/regions.py: a 20000^2 image costs the tiles a patch
overlaps, not the image).

- A patch is read with `margin` extra pixels on every side, for the warps (data/patch_batches.py).
- Pixels beyond the image are filled by reflection (numpy's "reflect"), the mask by the same indices: labels stay labels.
- Draws come only from the generator passed in: the same state gives the same patches, whichever thread asks.
- A PNG (or GIF, JPEG) mask cannot be read partially: it is decoded whole, once, and held ((H, W) bytes, 400 MB at
  20000^2). Store masks of huge images as TIFF.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from unetkit.data.masks import ClassPalette, mask_channels, read_raw_mask, to_classes
from unetkit.data.pairing import Pair
from unetkit.data.regions import can_stream, image_size, open_rows
from unetkit.errors import UserError

BAND_PIXELS = 2**21  # mask pixels scanned at a time when locating classes
MAX_LOCATIONS = 10_000  # pixel positions kept per class and image (nnU-Net keeps 10000 too)


class Source(Protocol):
    """One labelled image that patches are read from."""

    height: int
    width: int

    def read(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (y1-y0, x1-x0, C) in its dtype and mask (y1-y0, x1-x0) uint8, inside the image."""

    def mask_bands(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, mask rows (rows, W) uint8) covering the mask, in bounded pieces."""


@dataclass
class ArraySource:
    """An image (H, W, C) and its mask (H, W) of class indices, in memory."""

    image: np.ndarray
    mask: np.ndarray
    height: int = field(init=False)
    width: int = field(init=False)

    def __post_init__(self) -> None:
        self.height, self.width = self.image.shape[:2]

    def read(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
        return self.image[y0:y1, x0:x1], self.mask[y0:y1, x0:x1]

    def mask_bands(self) -> Iterator[tuple[int, np.ndarray]]:
        yield 0, self.mask


@dataclass
class FileSource:
    """A labelled pair on disk, read by region: the image as `channels` channels, the mask through masks.to_classes."""

    pair: Pair
    channels: int
    num_classes: int
    ignore_index: int | None = None
    palette: ClassPalette | None = None
    multilabel: bool = False  # masks carry one 0/1 channel per label: (H, W, K)
    height: int = field(init=False)
    width: int = field(init=False)
    _whole_mask: np.ndarray | None = field(init=False, default=None, repr=False)
    _mask_channels: int | None = field(init=False, repr=False)  # 3: classes.yaml colours, masks read as RGB

    def __post_init__(self) -> None:
        self._mask_channels = mask_channels(self.palette, self.multilabel)
        self.height, self.width = image_size(self.pair.image)
        mask_size = image_size(self.pair.mask)
        if mask_size != (self.height, self.width):
            raise UserError(f"{self.pair.mask}: mask is {mask_size[1]}x{mask_size[0]} but its image is "
                            f"{self.width}x{self.height} (width x height)")

    def read(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
        with open_rows(self.pair.image, self.channels) as reader:
            image = reader.region(y0, y1, x0, x1)
        if not can_stream(self.pair.mask):
            return image, self._mask_whole()[y0:y1, x0:x1]
        with open_rows(self.pair.mask, self._mask_channels) as reader:
            return image, self._decode(reader.region(y0, y1, x0, x1))

    def mask_bands(self) -> Iterator[tuple[int, np.ndarray]]:
        if not can_stream(self.pair.mask):
            yield 0, self._mask_whole()
            return
        with open_rows(self.pair.mask, self._mask_channels) as reader:
            step = max(1, BAND_PIXELS // self.width)
            for y in range(0, self.height, step):
                yield y, self._decode(reader(y, min(y + step, self.height)))

    def _decode(self, raw: np.ndarray) -> np.ndarray:
        return to_classes(raw, self.pair.mask, self.num_classes, self.ignore_index, self.palette, self.multilabel)

    def _mask_whole(self) -> np.ndarray:
        if self._whole_mask is None:  # PNG/JPEG/GIF: no partial reads, decoded once and kept
            self._whole_mask = self._decode(read_raw_mask(self.pair.mask, self.palette))
        return self._whole_mask


class PatchSampler:
    """Random `patch_size` crops of `sources`, `foreground_share` of each batch centred on foreground. `classes`: the
    mask values patches may be centred on ((1,) binary, 1..K-1 for K classes: background is never forced). A forced
    patch draws a class uniformly among those found anywhere, then an image holding it, then one of its located
    pixels, so every class is visited equally often however rare it is."""

    def __init__(self, sources: Sequence[Source], patch_size: int | tuple[int, int], *,
                 locations: Sequence[dict[int, np.ndarray]], classes: Sequence[int] = (1,),
                 foreground_share: float = 0.33, margin: int = 0) -> None:
        """`locations`: each source's class positions as `scan_mask` found them."""
        if not sources:
            raise ValueError("PatchSampler needs at least one source")
        if not 0.0 <= foreground_share <= 1.0:
            raise ValueError(f"foreground_share {foreground_share} must lie in [0, 1]")
        self.sources = list(sources)
        self.patch = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
        self.foreground_share, self.margin = foreground_share, int(margin)
        self.locations = list(locations)  # [source][class] -> (n, 2)
        self.classes = [c for c in classes if any(len(found.get(c, ())) for found in self.locations)]

    def forced(self, n: int) -> int:
        """How many of n patches (the first) are centred on a class: a fixed count, as nnU-Net's, never short by chance."""
        return math.ceil(n * self.foreground_share - 1e-9) if self.classes else 0

    def draw(self, rng: np.random.Generator, forced: bool) -> tuple[np.ndarray, np.ndarray, int, tuple[int, int], int]:
        """One patch: (image (h+2m, w+2m, C), mask (h+2m, w+2m), source index, inner top-left (y, x), the class
        it was centred on or -1). `forced`: centred on a pixel of a class drawn uniformly; else anywhere."""
        target = self.classes[int(rng.integers(len(self.classes)))] if forced and self.classes else None
        holding = range(len(self.sources)) if target is None else [
            i for i, found in enumerate(self.locations) if len(found.get(target, ()))]
        index = holding[int(rng.integers(len(holding)))]
        source = self.sources[index]
        sizes = zip((source.height, source.width), self.patch)
        bounds = [(min(0, size - side), max(0, size - side)) for size, side in sizes]
        if target is None:
            y, x = (int(rng.integers(low, high + 1)) for low, high in bounds)
        else:
            found = self.locations[index][target]
            centre = found[int(rng.integers(len(found)))]
            y, x = (int(np.clip(int(c) - s // 2, low, high)) for c, s, (low, high) in zip(centre, self.patch, bounds))
        image, mask = self._read(source, y, x)
        return image, mask, index, (y, x), -1 if target is None else target

    def _read(self, source: Source, y: int, x: int) -> tuple[np.ndarray, np.ndarray]:
        """The window [y - m, y + h + m) x [x - m, x + w + m), reflected where it leaves the image."""
        (h, w), m = self.patch, self.margin
        rows = reflected(np.arange(y - m, y + h + m), source.height)
        cols = reflected(np.arange(x - m, x + w + m), source.width)
        y0, y1, x0, x1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        image, mask = source.read(y0, y1, x0, x1)
        grid = np.ix_(rows - y0, cols - x0)
        return image[grid], mask[grid]


def reflected(index: np.ndarray, size: int) -> np.ndarray:
    """Indices mirrored into [0, size) without repeating the edge (numpy.pad's "reflect")."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    folded = np.mod(index, period)
    return np.where(folded > size - 1, period - folded, folded)


def scan_mask(source: Source, classes: Sequence[int], rng: np.random.Generator) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """One pass over a source's mask, band by band: up to MAX_LOCATIONS (y, x) positions per class (a uniform
    sample of its pixels, by bottom-k random keys) and the pixel count of every value, (256,) for class
    indices; for multi-label masks (H, W, K), class k means label k - 1 and counts[k] its pixels, counts[0]
    the pixels with no label."""
    kept: dict[int, tuple[np.ndarray, np.ndarray]] = {c: (np.zeros((0, 2), np.int32), np.zeros(0)) for c in classes}
    counts = np.zeros(256, np.int64)
    for y0, band in source.mask_bands():
        if band.ndim == 3:
            counts[1 : band.shape[2] + 1] += np.count_nonzero(band, axis=(0, 1))
            counts[0] += int(np.count_nonzero(~band.any(axis=2)))
        else:
            counts += np.bincount(band.reshape(-1), minlength=256)[:256]
        for value in classes:
            ys, xs = np.nonzero(band == value if band.ndim == 2 else band[:, :, value - 1] > 0)
            positions = np.concatenate([kept[value][0], np.stack([ys + y0, xs], axis=1).astype(np.int32)])
            keys = np.concatenate([kept[value][1], rng.random(len(ys))])
            if len(keys) > MAX_LOCATIONS:
                best = np.argpartition(keys, MAX_LOCATIONS)[:MAX_LOCATIONS]
                positions, keys = positions[best], keys[best]
            kept[value] = (positions, keys)
    return {value: positions for value, (positions, _) in kept.items()}, counts
