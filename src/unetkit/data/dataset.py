"""A labelled data set, loaded into memory: the pairs data/pairing.py finds, decoded and checked.

Where the pairs come from (DIR/images + DIR/masks, folders named apart, name patterns, a pairs
CSV) is data/pairing.py's business; `find_pairs`, `Pair` and `list_images` are re-exported here
for the modules that have always imported them from this one.

Decoding every file once up front does three jobs: it validates the whole data set
before any output is written (a bad file fails the run in seconds, not at epoch 30),
it lets masks be inspected for coverage and class values, and it takes file decoding
out of the training loop, so batches cost only an index and a copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from unetkit.data.io import read_array, to_channels
from unetkit.data.masks import ClassPalette, decode_mask, decode_multilabel, read_class_palette
from unetkit.data.naming import list_images
from unetkit.data.pairing import DataSource, Pair, find_pairs
from unetkit.data.preprocess import resize_image, resize_mask
from unetkit.errors import UserError

__all__ = ["LabelledSet", "Pair", "find_pairs", "list_images", "load_labelled", "load_pair"]


@dataclass
class LabelledSet:
    """Decoded images (N, H, W, C) in their stored dtype, masks (N, H, W) uint8 class indices,
    optional per-pixel loss weights (N, H, W) float32 (the border term of data/weights.py).

    A set of mixed sizes (validation of patch training, data/patch_set.py) is `ragged`: images and
    masks are object arrays of N arrays (H_i, W_i, C) and (H_i, W_i), indexed the same way.
    """

    stems: list[str]
    images: np.ndarray
    masks: np.ndarray
    pairs: list[Pair]
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.stems)

    def subset(self, indices: np.ndarray) -> LabelledSet:
        """The examples at `indices`, in that order."""
        return LabelledSet([self.stems[i] for i in indices], self.images[indices], self.masks[indices],
                           [self.pairs[i] for i in indices], None if self.weights is None else self.weights[indices])

    @classmethod
    def of(cls, stems: list[str], images: list[np.ndarray], masks: list[np.ndarray], pairs: list[Pair]) -> LabelledSet:
        """Stacked when every image has one shape and dtype, else ragged."""
        if all(i.shape == images[0].shape and i.dtype == images[0].dtype for i in images):
            return cls(stems, np.stack(images), np.stack(masks), pairs)
        return cls(stems, _objects(images), _objects(masks), pairs)

    @property
    def ragged(self) -> bool:
        return self.images.dtype == object

    def coverage(self, ignore_index: int | None = None) -> np.ndarray:
        """Fraction of foreground (non-zero, not ignored) pixels per mask, (N,)."""
        if self.ragged:
            return np.array([_foreground(mask, ignore_index).mean() for mask in self.masks], np.float64)
        return _foreground(self.masks, ignore_index).reshape(len(self), -1).mean(axis=1)


def _objects(arrays: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(arrays), dtype=object)
    for i, array in enumerate(arrays):  # one by one: a list of equal shapes would be read as one nested array
        out[i] = array
    return out


def _foreground(masks: np.ndarray, ignore_index: int | None) -> np.ndarray:
    return masks > 0 if ignore_index is None else (masks > 0) & (masks != ignore_index)


def read_mask(path: str | os.PathLike[str], num_classes: int, ignore_index: int | None = None,
              palette: ClassPalette | None = None, hashes: dict[Path, str] | None = None) -> np.ndarray:
    """One single-label mask file -> (H, W) uint8 class indices, read as `train` reads it (one line naming the file
    otherwise): through classes.yaml's colours or values where it has one (`palette`), else decode_mask.
    `hashes` as io.read_array's."""
    # Palette PNGs are class indices, unless classes.yaml names colours: then their colours count.
    by_colour = palette is not None and all(c is not None for c in palette.colors)
    raw = read_array(path, palette_indices=not by_colour, hashes=hashes)
    return palette.indices(raw, path) if palette else decode_mask(raw, num_classes, path, ignore_index)


def load_pair(pair: Pair, in_channels: int, num_classes: int, ignore_index: int | None = None,
              palette: ClassPalette | None = None, multilabel: bool = False,
              hashes: dict[Path, str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pair: image (H, W, in_channels) in its dtype, mask (H, W) uint8 indices ((H, W, K) 0/1 labels).
    `hashes`: collects the SHA-256 of both files' bytes (io.read_array)."""
    image = to_channels(read_array(pair.image, hashes=hashes), in_channels, pair.image)
    if multilabel:
        mask = decode_multilabel(read_array(pair.mask, palette_indices=True, hashes=hashes), num_classes, pair.mask)
    else:
        mask = read_mask(pair.mask, num_classes, ignore_index, palette, hashes)
    if image.shape[:2] != mask.shape[:2]:
        raise UserError(f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                        f"{image.shape[1]}x{image.shape[0]} (width x height)")
    return image, mask


def load_labelled(data_dir: DataSource | str | os.PathLike[str], in_channels: int, num_classes: int,
                  *, resize_to: int | None = None, ignore_index: int | None = None, multilabel: bool = False,
                  show_progress: bool = True, hashes: dict[Path, str] | None = None) -> LabelledSet:
    """Decode and validate the whole folder.

    With `resize_to`, every pair is resized (images to float32 in [0, 1], masks by nearest
    neighbour), so sizes and bit depths may be mixed; otherwise all must match. `hashes` collects the
    SHA-256 of every file's bytes, read in the same pass.
    """
    pairs = find_pairs(data_dir)
    palette = None if multilabel else read_class_palette(data_dir, num_classes, ignore_index)
    images, masks = [], []
    for pair in tqdm(pairs, desc="loading", unit="img", disable=None if show_progress else True, leave=False):
        image, mask = load_pair(pair, in_channels, num_classes, ignore_index, palette, multilabel, hashes)
        if resize_to is not None:
            image, mask = resize_image(image, resize_to, resize_to), resize_mask(mask, resize_to, resize_to)
        if images and (image.shape != images[0].shape or image.dtype != images[0].dtype):
            raise UserError(f"{pair.image}: image is {image.shape[1]}x{image.shape[0]} {image.dtype}, but "
                            f"{pairs[0].image.name} is {images[0].shape[1]}x{images[0].shape[0]} {images[0].dtype}; "
                            "whole-image training needs one size and bit depth (train on patches: leave --patch-size "
                            "unset or give one; or --size-policy resize)")
        images.append(image)
        masks.append(mask)
    return LabelledSet([p.stem for p in pairs], np.stack(images), np.stack(masks), pairs)
