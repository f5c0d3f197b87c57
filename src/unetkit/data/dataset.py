"""A labelled folder (DIR/images/* + DIR/masks/*, matched by file stem), loaded into memory.

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

from unetkit.data.io import check_regular_file, is_image_file, read_array, to_channels
from unetkit.data.masks import ClassPalette, decode_mask, decode_multilabel, read_class_palette
from unetkit.data.preprocess import resize_image, resize_mask
from unetkit.errors import UserError


@dataclass(frozen=True)
class Pair:
    """One labelled example on disk."""

    stem: str
    image: Path
    mask: Path


@dataclass
class LabelledSet:
    """Decoded images (N, H, W, C) in their stored dtype, masks (N, H, W) uint8 class indices,
    optional per-pixel loss weights (N, H, W) float32 (the border term of data/weights.py)."""

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

    def coverage(self, ignore_index: int | None = None) -> np.ndarray:
        """Fraction of foreground (non-zero, not ignored) pixels per mask, (N,)."""
        foreground = self.masks > 0 if ignore_index is None else (self.masks > 0) & (self.masks != ignore_index)
        return foreground.reshape(len(self), -1).mean(axis=1)


def list_images(folder: Path) -> dict[str, Path]:
    """Image files of `folder` by stem; hidden files and folders are skipped, other entries are errors.

    Nothing is opened here: a FIFO, socket, device, symbolic link loop or broken link is
    refused by its kind (a FIFO named x.png would block its reader forever).
    """
    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        check_regular_file(path)
        if not is_image_file(path):
            raise UserError(f"{path}: unknown image extension '{path.suffix}'")
        if path.stem in found:
            raise UserError(f"{path}: two files share the stem '{path.stem}' (also {found[path.stem].name})")
        found[path.stem] = path
    return found


def find_pairs(data_dir: str | os.PathLike[str]) -> list[Pair]:
    """Match DIR/images/* with DIR/masks/* by stem; every image needs a mask and vice versa."""
    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"{root}: data folder not found")
    images = list_images(root / "images")
    masks = list_images(root / "masks")
    if not images:
        raise UserError(f"{root / 'images'}: no images found")
    for stem, path in images.items():
        if stem not in masks:
            raise UserError(f"{path}: image has no mask in {root / 'masks'} (looked for '{stem}.*')")
    for stem, path in masks.items():
        if stem not in images:
            raise UserError(f"{path}: mask has no image in {root / 'images'}")
    return [Pair(stem, images[stem], masks[stem]) for stem in images]


def load_pair(pair: Pair, in_channels: int, num_classes: int, ignore_index: int | None = None,
              palette: ClassPalette | None = None, multilabel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pair: image (H, W, in_channels) in its dtype, mask (H, W) uint8 indices ((H, W, K) 0/1 labels)."""
    image = to_channels(read_array(pair.image), in_channels, pair.image)
    # Palette PNGs are class indices, unless classes.yaml names colours: then their colours count.
    by_colour = palette is not None and all(c is not None for c in palette.colors)
    raw = read_array(pair.mask, palette_indices=not by_colour)
    if multilabel:
        mask = decode_multilabel(raw, num_classes, pair.mask)
    else:
        mask = palette.indices(raw, pair.mask) if palette else decode_mask(raw, num_classes, pair.mask, ignore_index)
    if image.shape[:2] != mask.shape[:2]:
        raise UserError(f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                        f"{image.shape[1]}x{image.shape[0]} (width x height)")
    return image, mask


def load_labelled(data_dir: str | os.PathLike[str], in_channels: int, num_classes: int,
                  *, resize_to: int | None = None, ignore_index: int | None = None, multilabel: bool = False,
                  show_progress: bool = True) -> LabelledSet:
    """Decode and validate the whole folder.

    With `resize_to`, every pair is resized (images to float32 in [0, 1], masks by nearest
    neighbour), so sizes and bit depths may be mixed; otherwise all must match.
    """
    pairs = find_pairs(data_dir)
    palette = None if multilabel else read_class_palette(data_dir, num_classes)
    images, masks = [], []
    for pair in tqdm(pairs, desc="loading", unit="img", disable=None if show_progress else True, leave=False):
        image, mask = load_pair(pair, in_channels, num_classes, ignore_index, palette, multilabel)
        if resize_to is not None:
            image, mask = resize_image(image, resize_to, resize_to), resize_mask(mask, resize_to, resize_to)
        if images and (image.shape != images[0].shape or image.dtype != images[0].dtype):
            raise UserError(f"{pair.image}: image is {image.shape[1]}x{image.shape[0]} {image.dtype}, but "
                            f"{pairs[0].image.name} is {images[0].shape[1]}x{images[0].shape[0]} {images[0].dtype}; "
                            "training needs one size and bit depth (train with --size-policy resize for mixed sizes)")
        images.append(image)
        masks.append(mask)
    return LabelledSet([p.stem for p in pairs], np.stack(images), np.stack(masks), pairs)
