"""The folder layouts people bring: which load as they are, and the one-line hint for those almost right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetkit.data.dataset import load_labelled
from unetkit.data.pairing import find_pairs
from unetkit.errors import UserError

TRUTH = np.zeros((3, 12, 10), np.uint8)
TRUTH[0, 2:6, 3:8] = 1
TRUTH[1, 7:, :4] = 1
TRUTH[2, 0, 0] = 1


def _write_mask(path: Path, mask: np.ndarray, encoding: str) -> None:
    """mask (H, W) 0/1 in one of the encodings users bring."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if encoding == "png":
        Image.fromarray(mask * 255).save(path)
    elif encoding == "tif":
        tifffile.imwrite(path, mask * 255)
    elif encoding in ("gif-01", "gif-0255", "gif-white-first"):  # Carvana: palette GIF
        indices = {"gif-01": mask, "gif-0255": mask * 255, "gif-white-first": 1 - mask}[encoding]
        image = Image.fromarray(indices.astype(np.uint8), "P")
        palette = np.zeros((256, 3), np.uint8)
        if encoding == "gif-white-first":
            palette[0] = 255  # index 0 is white (foreground), index 1 black
        else:
            palette[1] = palette[255] = 255
        image.putpalette(palette.reshape(-1).tolist())
        image.save(path)
    else:
        raise ValueError(encoding)


def _layout(root: Path, mask_folder: str, mask_name: str, encoding: str, image_ext: str = ".png") -> Path:
    rng = np.random.default_rng(0)
    for index, mask in enumerate(TRUTH):
        stem = f"car{index}"
        (root / "images").mkdir(parents=True, exist_ok=True)
        image = rng.integers(0, 255, mask.shape + (3,), dtype=np.uint8)
        Image.fromarray(image).save(root / "images" / f"{stem}{image_ext}")
        ext = ".gif" if encoding.startswith("gif") else f".{encoding}"
        _write_mask(root / mask_folder / mask_name.format(stem=stem, ext=ext), mask, encoding)
    return root


@pytest.mark.parametrize("mask_folder", ["masks", "labels"])
@pytest.mark.parametrize("mask_name", ["{stem}{ext}", "{stem}_mask{ext}"])
@pytest.mark.parametrize("encoding", ["png", "tif", "gif-01", "gif-0255", "gif-white-first"])
def test_common_layouts_load(tmp_path: Path, mask_folder: str, mask_name: str, encoding: str) -> None:
    root = _layout(tmp_path / "d", mask_folder, mask_name, encoding, image_ext=".jpg")
    pairs = find_pairs(root)
    assert [(p.stem, p.image.name, p.mask.parent.name) for p in pairs] == [
        (f"car{i}", f"car{i}.jpg", mask_folder) for i in range(3)]
    data = load_labelled(root, in_channels=3, num_classes=1, show_progress=False)
    assert np.array_equal(data.masks, TRUTH)


def _make(root: Path, entries: list[str]) -> None:
    """Create files (a.png, masks/a.png, ...) and folders (trailing /) under root."""
    for entry in entries:
        path = root / entry
        if entry.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)


RULE = "paired by images named '{{id}}.*' and masks '{{id}}.*' or '{{id}}_mask.*'"


@pytest.mark.parametrize("entries,expected", [
    (["images/a.png", "mask/a.png"], "{root}/masks: folder not found (masks are read from {root}/masks or {root}/labels); "
                                     "found {root}/mask: rename it to masks or pass --masks {root}/mask (1 file, pair "
                                     "with 1 of 1 images; binary, 0% foreground)"),
    (["images/a.png", "label/a.png"], "found {root}/label: rename it to masks"),
    (["images/a.png", "Masks/a.png"], "found {root}/Masks: rename it to masks"),
    (["imgs/a.png", "masks/a.png"], "{root}/images: folder not found; found {root}/imgs: rename it to images (or pass "
                                    "--images {root}/imgs)"),
    (["image/a.png", "masks/a.png"], "found {root}/image: rename it to images"),
    (["train/images/a.png", "train/masks/a.png", "test/images/b.png"],
     "{root}/images: folder not found; {root}/train holds images/: pass that folder (--data {root}/train)"),
    (["train/a.jpg", "train_masks/a_mask.gif"],
     "{root}/images: folder not found; {root}/train and {root}/train_masks look like images and masks: pass --images "
     "{root}/train --masks {root}/train_masks (or rename them to {root}/images and {root}/masks)"),
    (["a.png", "b.png"], "{root}/images: folder not found; {root} holds image files itself: put the images in "
                         "{root}/images and the masks in {root}/masks"),
    (["images/a.png", "images/a_mask.png"], "{root}/masks: folder not found (masks are read from {root}/masks or "
                                            "{root}/labels); {root}/images holds masks (a_mask.png): move them to {root}/masks"),
    (["images/a.png", "images/a_mask.png", "masks/"], "{root}/images and {root}/masks: 2 of 2 images without a mask "
                                                      "(a.png, a_mask.png), 0 of 0 masks without an image; 0 " + RULE +
                                                      "; a_mask.png is among the images: move the masks to {root}/masks"),
    (["images/a_sat.jpg", "masks/a_mask.png"], "{root}/images and {root}/masks: 1 of 1 images without a mask (a_sat.jpg), "
                                               "1 of 1 masks without an image (a_mask.png)"),
    (["images/a_sat.jpg", "masks/a_mask.png", "masks/a_sat.png"],
     "{root}/images and {root}/masks: 0 of 1 images without a mask, 1 of 2 masks without an image (a_mask.png); 1 " + RULE
     + "; a_sat.jpg matches a_mask.png only up to a suffix"),
])
def test_almost_right_layouts_get_a_one_line_hint(tmp_path: Path, entries: list[str], expected: str) -> None:
    root = tmp_path / "d"
    _make(root, entries)
    with pytest.raises(UserError) as caught:
        find_pairs(root)
    message = str(caught.value)
    assert "\n" not in message
    assert expected.format(root=root) in message


@pytest.mark.parametrize("entries,expected", [
    (["images/a.png", "images/b.png", "masks/a.png"], "{root}/images and {root}/masks: 1 of 2 images without a mask "
                                                      "(b.png), 0 of 1 masks without an image; 1 " + RULE),
    (["images/a.png", "masks/a.png", "masks/c.png"], "{root}/images and {root}/masks: 0 of 1 images without a mask, "
                                                     "1 of 2 masks without an image (c.png); 1 " + RULE),
    (["images/a.png", "masks/a.png", "masks/a_mask.png"], "{root}/masks/a_mask.png: image a.png has two masks "
                                                          "(a.png and a_mask.png); keep one"),
    (["images/a.png", "masks/a.png", "labels/a.png"], "{root}: holds both masks/ and labels/ with image files"),
    (["images/a.png", "masks/a.png", "masks/a.tif"], "{root}/masks/a.tif: two files share the stem 'a' (also a.png)"),
])
def test_true_mismatches_are_still_refused(tmp_path: Path, entries: list[str], expected: str) -> None:
    root = tmp_path / "d"
    _make(root, entries)
    with pytest.raises(UserError) as caught:
        find_pairs(root)
    assert str(caught.value).startswith(expected.format(root=root))


def test_an_empty_labels_folder_beside_masks_is_ignored(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _make(root, ["images/a.png", "masks/a.png", "labels/"])
    assert [p.mask for p in find_pairs(root)] == [root / "masks" / "a.png"]
