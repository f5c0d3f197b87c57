"""A labelled folder (DIR/images/* + DIR/masks/* or DIR/labels/*, matched by file stem), loaded into memory.

The layouts people bring are read as they are: masks in `masks/` or `labels/`, named like
their image (`ID.png`) or with `_mask` (`ID_mask.gif`, Carvana's), in any readable format.
A layout that is almost right (`mask/`, `imgs/`, a `train/` folder holding both, masks
mixed with the images) is refused with one line saying what to rename, never guessed at.

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


MASK_FOLDERS = ("masks", "labels")  # where masks are read from, in this order of naming
MASK_SUFFIX = "_mask"  # ID_mask.png is the mask of ID.*
# Folder names that are almost the ones read: suggested renames in the error, never read.
_IMAGE_FOLDER_LOOKALIKES = ("images", "image", "imgs", "img")
_MASK_FOLDER_LOOKALIKES = ("masks", "labels", "mask", "label", "gt", "ground_truth", "groundtruth", "annotations")


def find_pairs(data_dir: str | os.PathLike[str]) -> list[Pair]:
    """Match DIR/images/* with DIR/masks/* (or DIR/labels/*) by stem, `ID_mask.*` counting as the mask of `ID.*`;
    every image needs exactly one mask and every mask an image."""
    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"{root}: data folder not found")
    image_dir = root / "images"
    if not image_dir.is_dir():
        raise UserError(f"{image_dir}: folder not found{_image_folder_hint(root)}")
    mask_dir = _mask_folder(root, image_dir)
    images = list_images(image_dir)
    masks = list_images(mask_dir)
    if not images:
        raise UserError(f"{image_dir}: no images found")
    mask_of: dict[str, Path] = {}
    for stem, path in masks.items():
        image_stem = stem if stem in images else stem.removesuffix(MASK_SUFFIX)
        if image_stem in mask_of:
            raise UserError(f"{path}: image {images[image_stem].name} has two masks ({mask_of[image_stem].name} and "
                            f"{path.name}); keep one")
        mask_of[image_stem] = path
    for stem, path in images.items():
        if stem not in mask_of:
            raise UserError(f"{path}: image has no mask in {mask_dir} (looked for '{stem}.*' and '{stem}{MASK_SUFFIX}.*')"
                            f"{_mixed_in_hint(images, stem, mask_dir)}")
    for stem, path in mask_of.items():
        if stem not in images:
            raise UserError(f"{path}: mask has no image in {image_dir} (looked for '{stem}.*')"
                            f"{_other_suffix_hint(images, stem)}")
    return [Pair(stem, images[stem], mask_of[stem]) for stem in images]


def _mask_folder(root: Path, image_dir: Path) -> Path:
    """DIR/masks or DIR/labels: the one that exists (both holding images is refused), else one line saying what to rename."""
    present = [root / name for name in MASK_FOLDERS if (root / name).is_dir()]
    if len(present) == 2 and all(_holds_images(folder) for folder in present):
        raise UserError(f"{root}: holds both masks/ and labels/ with image files; unetkit reads masks from one of them, "
                        "rename or move the other")
    present = [folder for folder in present if _holds_images(folder)] or present
    if present:
        return present[0]
    hint = _lookalike_hint(root, _MASK_FOLDER_LOOKALIKES, "masks")
    mixed = [path.name for path in sorted(image_dir.iterdir()) if is_image_file(path) and path.stem.endswith(MASK_SUFFIX)]
    if not hint and mixed:
        hint = f"; {image_dir} holds masks ({mixed[0]}): move them to {root / 'masks'}"
    raise UserError(f"{root / 'masks'}: folder not found (masks are read from {root}/masks or {root}/labels){hint}")


def _holds_images(folder: Path) -> bool:
    return any(is_image_file(path) for path in folder.iterdir() if not path.name.startswith("."))


def _image_folder_hint(root: Path) -> str:
    """Why DIR/images is missing, when the folder says so: a lookalike name, a train/ inside, images at the top."""
    hint = _lookalike_hint(root, _IMAGE_FOLDER_LOOKALIKES, "images")
    if hint:
        return hint
    subfolders = sorted((path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")),
                        key=lambda path: (path.name != "train", path.name))
    for sub in subfolders:
        if (sub / "images").is_dir():
            return f"; {sub} holds images/: pass that folder (--data {sub})"
    masks_beside = sorted(path for path in root.iterdir() if path.is_dir() and path.name.endswith(f"{MASK_SUFFIX}s"))
    if masks_beside:  # Carvana: DIR/train with the images, DIR/train_masks with the masks
        masks = masks_beside[0]
        pictures = root / masks.name.removesuffix(f"{MASK_SUFFIX}s")
        if pictures.is_dir():
            return f"; {pictures} and {masks} look like images and masks: rename them to {root}/images and {root}/masks"
    if any(is_image_file(path) for path in root.iterdir() if path.is_file()):
        return f"; {root} holds image files itself: put the images in {root}/images and the masks in {root}/masks"
    return ""


def _lookalike_hint(root: Path, names: tuple[str, ...], wanted: str) -> str:
    """'; found DIR/mask: rename it to masks' when a folder's name is almost one unetkit reads (case ignored)."""
    for path in sorted(root.iterdir()):
        if path.is_dir() and path.name.lower() in names and path.name not in MASK_FOLDERS + ("images",):
            return f"; found {path}: rename it to {wanted}"
    return ""


def _mixed_in_hint(images: dict[str, Path], stem: str, mask_dir: Path) -> str:
    """An image without a mask whose mask sits among the images (ID.png beside ID_mask.png in images/)."""
    mixed = images.get(f"{stem}{MASK_SUFFIX}")
    return f"; {mixed.name} is among the images: move the masks to {mask_dir}" if mixed else ""


def _other_suffix_hint(images: dict[str, Path], stem: str) -> str:
    """A mask ID_mask.png whose image is named ID_sat.jpg (DeepGlobe) matches only up to a suffix."""
    near = sorted(image_stem for image_stem in images if image_stem.startswith(f"{stem}_"))
    return (f"; {images[near[0]].name} matches it only up to a suffix: name images ID.* and masks ID.* or ID{MASK_SUFFIX}.*"
            if near else "")


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
                            "whole-image training needs one size and bit depth (train on patches: leave --patch-size "
                            "unset or give one; or --size-policy resize)")
        images.append(image)
        masks.append(mask)
    return LabelledSet([p.stem for p in pairs], np.stack(images), np.stack(masks), pairs)
