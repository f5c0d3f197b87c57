"""A labelled folder for patch training: images of any sizes, the large ones never decoded whole.

`patch_set_of` keeps each pair as the `Source` (data/patches.py) that data/dataset.py::survey opened (decoded when
small or not readable by region, like a PNG; read by region when a TIFF or .npy over `LARGE_PIXELS`), and scans every
mask once, band by band, for the pixel count of each class (coverage for the split, class checks, class weights) and a
sample of each class's positions (patches centred on foreground).

Validation images are predicted whole, as `unetkit predict` would (`validation_set`), except those over
`VAL_WHOLE_PIXELS`: their probabilities alone would take gigabytes, so they are scored on `VAL_WINDOWS` windows of
`VAL_WINDOW` pixels a side, read by region (centred on foreground where there is some), and named `STEM@y,x`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from unetkit.data.dataset import LabelledSet, Survey
from unetkit.data.io import dtype_range
from unetkit.data.pairing import Pair
from unetkit.data.patches import Source, scan_mask

VAL_WHOLE_PIXELS = 2**24  # validation images up to this (4096^2) are predicted whole
VAL_WINDOW = 2048  # side of the windows larger validation images are scored on
VAL_WINDOWS = 4  # windows per such image


@dataclass
class PatchSet:
    """Labelled images as patch sources, with what one scan of their masks found: counts (N, 256), pixels of
    each mask value per image (multi-label: [0] no label, [k] label k-1); locations[i][class] (n, 2), sampled
    (y, x) positions of that class in image i."""

    stems: list[str]
    pairs: list[Pair]
    sources: list[Source]
    counts: np.ndarray
    locations: list[dict[int, np.ndarray]]
    classes: tuple[int, ...]  # the values patches may be centred on
    multilabel: bool = False

    def __len__(self) -> int:
        return len(self.stems)

    def subset(self, indices: np.ndarray) -> PatchSet:
        return PatchSet([self.stems[i] for i in indices], [self.pairs[i] for i in indices], [self.sources[i] for i in indices],
                        self.counts[indices], [self.locations[i] for i in indices], self.classes, self.multilabel)

    def coverage(self, ignore_index: int | None = None) -> np.ndarray:
        """Fraction of foreground (labelled, not ignored) pixels per image, (N,), as LabelledSet.coverage."""
        pixels = np.array([source.height * source.width for source in self.sources], np.float64)
        if self.multilabel:
            return 1.0 - self.counts[:, 0] / pixels
        ignored = self.counts[:, ignore_index] if ignore_index not in (None, 0) else 0
        return (pixels - self.counts[:, 0] - ignored) / pixels

    @property
    def pixels(self) -> int:
        return sum(source.height * source.width for source in self.sources)

    def held_out(self, indices: np.ndarray, seed: int = 0) -> LabelledSet:
        """The images at `indices` as validation predicts them: whole, large ones in windows (`validation_set`)."""
        return validation_set(self.subset(indices), seed)

    def class_counts(self) -> np.ndarray:
        """Pixels of each mask value over the set, (256,) (multi-label: as `counts`)."""
        return self.counts.sum(axis=0)

    @property
    def whole_masks(self) -> None:
        """No stacked masks: a PatchSet's images may differ in size, or stay on disk."""
        return None

    def statistics_images(self, rng: np.random.Generator, patch: int, n: int) -> np.ndarray:
        """n random patch x patch crops (n, h, w, C) float32 in [0, 1] by each image's bit depth (reflected
        where an image is smaller): the sample the normalisation statistics are measured on."""
        crops = []
        for _ in range(n):
            source = self.sources[int(rng.integers(len(self.sources)))]
            h, w = min(patch, source.height), min(patch, source.width)
            y, x = int(rng.integers(source.height - h + 1)), int(rng.integers(source.width - w + 1))
            image, _ = source.read(y, y + h, x, x + w)
            image = image.astype(np.float32) / dtype_range(image.dtype)
            crops.append(np.pad(image, ((0, patch - h), (0, patch - w), (0, 0)), mode="reflect"))
        return np.stack(crops)


def patch_set_of(found: Survey, num_classes: int, multilabel: bool = False, seed: int = 0) -> PatchSet:
    """The surveyed pairs as a PatchSet, their masks scanned by data/patches.py::scan_mask (draws from `seed`)."""
    classes = tuple(range(1, num_classes + 1 if multilabel else max(num_classes, 2)))  # labels, or non-background
    rng = np.random.default_rng(seed)
    locations, counts = zip(*(scan_mask(source, classes, rng) for source in found.sources))
    return PatchSet([p.stem for p in found.pairs], found.pairs, found.sources, np.stack(counts), list(locations),
                    classes, multilabel)


def validation_set(data: PatchSet, seed: int = 0) -> LabelledSet:
    """The images of `data` as a LabelledSet to predict whole (ragged when sizes differ); images over
    VAL_WHOLE_PIXELS become VAL_WINDOWS windows each (module docstring)."""
    rng = np.random.default_rng((seed, 7))
    stems, images, masks, pairs = [], [], [], []
    for stem, pair, source, found in zip(data.stems, data.pairs, data.sources, data.locations):
        whole = source.height * source.width <= VAL_WHOLE_PIXELS
        windows = [(0, 0, source.height, source.width)] if whole else _windows(source, found, rng)
        for y, x, h, w in windows:
            image, mask = source.read(y, y + h, x, x + w)
            stems.append(stem if len(windows) == 1 else f"{stem}@{y},{x}")
            images.append(np.ascontiguousarray(image))
            masks.append(np.ascontiguousarray(mask))
            pairs.append(pair)
    return LabelledSet.of(stems, images, masks, pairs)


def _windows(source: Source, found: dict[int, np.ndarray], rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """VAL_WINDOWS windows (y, x, h, w): up to half centred on foreground positions, the rest at random."""
    h, w = min(VAL_WINDOW, source.height), min(VAL_WINDOW, source.width)
    positions = np.concatenate([p for p in found.values() if len(p)] or [np.zeros((0, 2), np.int32)])
    windows = []
    for i in range(VAL_WINDOWS):
        if i < math.ceil(VAL_WINDOWS / 2) and len(positions):
            cy, cx = positions[int(rng.integers(len(positions)))]
            y, x = int(cy) - h // 2, int(cx) - w // 2
        else:
            y, x = int(rng.integers(source.height - h + 1)), int(rng.integers(source.width - w + 1))
        windows.append((int(np.clip(y, 0, source.height - h)), int(np.clip(x, 0, source.width - w)), h, w))
    return windows
