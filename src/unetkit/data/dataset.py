"""A labelled data set, read in one pass: the pairs data/pairing.py finds, hashed, fingerprinted, decoded, checked.

Decoding every file up front validates the whole set before any output is written (a bad file fails the run in
seconds, not at epoch 30) and takes decoding out of the training loop. `survey` reads each file once for all that
training needs before its first step: the pairs, a content hash per file (what --resume compares), the fingerprint
(what the plan is made from) and the decoded arrays. Large TIFF and .npy images stay on disk as region-read sources
(data/patches.py) when the run may train on patches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from unetkit.data.fingerprint import Fingerprint, Measure
from unetkit.data.io import read_array, to_channels
from unetkit.data.masks import ClassPalette, read_class_palette, read_raw_mask, to_classes
from unetkit.data.naming import list_images as list_images  # re-exported for review/session.py
from unetkit.data.pairing import DataSource, Pair, find_pairs
from unetkit.data.patches import ArraySource, FileSource, Source
from unetkit.data.preprocess import resize_image, resize_mask
from unetkit.data.read_ahead import in_order
from unetkit.data.regions import is_large
from unetkit.errors import UserError


@dataclass
class LabelledSet:
    """Decoded images (N, H, W, C) in their stored dtype, masks (N, H, W) uint8 class indices, optional per-pixel
    loss weights (N, H, W) float32 (data/weights.py). A set of mixed sizes (validation of patch training) is
    `ragged`: images and masks are object arrays of N arrays (H_i, W_i, C) and (H_i, W_i)."""

    stems: list[str]
    images: np.ndarray
    masks: np.ndarray
    pairs: list[Pair]
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.stems)

    def subset(self, indices: np.ndarray) -> LabelledSet:
        return LabelledSet([self.stems[i] for i in indices], self.images[indices], self.masks[indices],
                           [self.pairs[i] for i in indices], None if self.weights is None else self.weights[indices])

    @classmethod
    def of(cls, stems: list[str], images: list[np.ndarray], masks: list[np.ndarray], pairs: list[Pair]) -> LabelledSet:
        """Stacked when every image has one shape and dtype, else ragged."""
        if all(i.shape == images[0].shape and i.dtype == images[0].dtype for i in images):
            return cls(stems, np.stack(images), np.stack(masks), pairs)
        # fromiter: np.array would read a list of equal shapes as one nested array
        return cls(stems, np.fromiter(images, object, len(images)), np.fromiter(masks, object, len(masks)), pairs)

    @property
    def ragged(self) -> bool:
        return self.images.dtype == object

    def held_out(self, indices: np.ndarray, seed: int = 0) -> LabelledSet:
        """The examples at `indices` as validation predicts them: whole, as they are (PatchSet windows large ones)."""
        return self.subset(indices)

    def statistics_images(self, rng: np.random.Generator, patch: int, n: int) -> np.ndarray:
        """The images normalisation statistics are measured on: all of them (a PatchSet samples patches)."""
        return self.images

    def class_counts(self) -> np.ndarray:
        """Pixels of each mask value over the set, (256,)."""
        return np.bincount(self.masks.reshape(-1), minlength=256)

    @property
    def whole_masks(self) -> np.ndarray | None:
        """The single-label masks (N, H, W) when they are one stacked array, else None."""
        return self.masks if not self.ragged and self.masks.ndim == 3 else None

    def coverage(self, ignore_index: int | None = None) -> np.ndarray:
        """Fraction of foreground (non-zero, not ignored) pixels per mask, (N,)."""
        return np.array([_foreground(mask, ignore_index).mean() for mask in self.masks], np.float64)


def _foreground(masks: np.ndarray, ignore_index: int | None) -> np.ndarray:
    return masks > 0 if ignore_index is None else (masks > 0) & (masks != ignore_index)


def read_mask(path: str | os.PathLike[str], num_classes: int, ignore_index: int | None = None,
              palette: ClassPalette | None = None) -> np.ndarray:
    """One single-label mask file -> (H, W) uint8 class indices, read as `train` reads it."""
    return to_classes(read_raw_mask(path, palette), path, num_classes, ignore_index, palette)


def read_raw_pair(pair: Pair, palette: ClassPalette | None = None,
                  hashes: dict[Path, str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The image and mask files of `pair` as io.read_array decodes them, before `decode_pair` interprets them."""
    return read_array(pair.image, hashes=hashes), read_raw_mask(pair.mask, palette, hashes)


def decode_pair(pair: Pair, raw: tuple[np.ndarray, np.ndarray], in_channels: int, num_classes: int,
                ignore_index: int | None = None, palette: ClassPalette | None = None,
                multilabel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """`read_raw_pair`'s arrays as training takes them: image (H, W, in_channels), mask (H, W) indices or (H, W, K)."""
    image = to_channels(raw[0], in_channels, pair.image)
    mask = to_classes(raw[1], pair.mask, num_classes, ignore_index, palette, multilabel)
    if image.shape[:2] != mask.shape[:2]:
        raise UserError(f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                        f"{image.shape[1]}x{image.shape[0]} (width x height)")
    return image, mask


def load_pair(pair: Pair, in_channels: int, num_classes: int, ignore_index: int | None = None,
              palette: ClassPalette | None = None, multilabel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    return decode_pair(pair, read_raw_pair(pair, palette), in_channels, num_classes, ignore_index, palette, multilabel)


def load_labelled(data_dir: DataSource | str | os.PathLike[str], in_channels: int, num_classes: int,
                  *, resize_to: int | None = None, ignore_index: int | None = None, multilabel: bool = False,
                  show_progress: bool = True) -> LabelledSet:
    """Decode and validate the whole folder; with `resize_to` every pair is resized (images to float32 in [0, 1],
    masks by nearest neighbour), so sizes and bit depths may be mixed, otherwise all must match."""
    return survey(data_dir, in_channels, num_classes, ignore_index=ignore_index, multilabel=multilabel, measure=False,
                  whole=True, resize_to=resize_to, show_progress=show_progress).labelled()


@dataclass
class Survey:
    """What one pass over a folder found: per pair (in `pairs`' order) its `Source`, decoded in memory (ArraySource) or
    left on disk for reads by region (FileSource); the files' content hashes; the fingerprint when it was measured."""

    source: DataSource
    pairs: list[Pair]
    sources: list[Source]
    hashes: dict[Path, str]
    fingerprint: Fingerprint | None

    def labelled(self) -> LabelledSet:
        """The folder as one stack of whole images (a source left on disk is read whole here)."""
        images, masks = zip(*(source.read(0, source.height, 0, source.width) for source in self.sources))
        for pair, image in zip(self.pairs, images):
            if image.shape != images[0].shape or image.dtype != images[0].dtype:
                raise UserError(f"{pair.image}: image is {image.shape[1]}x{image.shape[0]} {image.dtype}, but "
                                f"{self.pairs[0].image.name} is {images[0].shape[1]}x{images[0].shape[0]} "
                                f"{images[0].dtype}; whole-image training needs one size and bit depth (train on "
                                "patches: leave --patch-size unset or give one; or --size-policy resize)")
        return LabelledSet([p.stem for p in self.pairs], np.stack(images), np.stack(masks), self.pairs)


def survey(data_dir: DataSource | str | os.PathLike[str], in_channels: int, num_classes: int, *, ignore_index: int | None = None,
           multilabel: bool = False, seed: int = 0, measure: bool = True, whole: bool = False,
           resize_to: int | None = None, show_progress: bool = True) -> Survey:
    """Read, hash, check and (with `measure`) fingerprint every pair of `data_dir` once. `whole`: every pair is
    decoded (none left on disk); `resize_to` then resizes each after it is measured. The fingerprint reads masks as
    `fingerprint(num_classes=K)` does (multi-label: `num_classes=None`), with `seed`'s draws."""
    pairs = find_pairs(data_dir)
    palette = None if multilabel else read_class_palette(data_dir, num_classes, ignore_index)
    measured = Measure(len(pairs), palette, num_classes=None if multilabel else num_classes,
                       ignore_index=ignore_index, seed=seed, multilabel=multilabel) if measure else None
    hashes: dict[Path, str] = {}

    def read(pair: Pair) -> tuple[tuple[np.ndarray, np.ndarray], ArraySource] | None:
        """The pair decoded (raw for the fingerprint, then as training takes it), or None to leave it on disk."""
        if not whole and is_large(pair.image):
            return None
        raw = read_raw_pair(pair, palette, hashes)
        image, mask = decode_pair(pair, raw, in_channels, num_classes, ignore_index, palette, multilabel)
        if resize_to is not None:
            image, mask = resize_image(image, resize_to, resize_to), resize_mask(mask, resize_to, resize_to)
        return raw, ArraySource(image, mask)

    sources: list[Source] = []
    progress = tqdm(pairs, desc="reading", unit="img", disable=None if show_progress else True, leave=False)
    for pair, found in zip(progress, in_order(read, pairs)):
        sources.append(found[1] if found else FileSource(pair, in_channels, num_classes, ignore_index, palette, multilabel))
        if found is None:  # left on disk: hashed by size, not read
            hashes.update({path: f"size:{path.stat().st_size}" for path in (pair.image, pair.mask)})
        if measured is not None:
            measured.add(pair, *(found[0] if found else ()))
    return Survey(DataSource.of(data_dir), pairs, sources, hashes,
                  None if measured is None else measured.result(str(data_dir)))

