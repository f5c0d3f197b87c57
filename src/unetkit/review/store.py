"""What a review writes under LABELS, and nothing it may lose: masks, their earlier versions, a journal.

LABELS/masks/ID.png is the mask in the format `train` reads, written atomically; the version it
replaces goes to LABELS/history/ID/<time>.png. LABELS/images/ holds a copy of each reviewed image (none
when --images is LABELS/images), so `train --data LABELS` finds the pairs. LABELS/review.jsonl gets a
line per save, flushed to disk before the save answers.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from unetkit.data.io import read_array, write_png
from unetkit.fileio import atomic_path, make_dir, write_text
from unetkit.visualize import class_colours

JOURNAL = "review.jsonl"


class UploadError(ValueError):
    """A mask upload that is not a PNG of the image's size holding the model's classes (one line, HTTP 400)."""


def parse_mask_png(body: bytes, height: int, width: int, num_classes: int) -> np.ndarray:
    """A PNG upload -> (H, W) uint8 class indices. Gray, palette (indices) or RGB(A) with equal colour
    channels and an opaque alpha; binary models take 0/1 or 0/255. The size is read from the header
    before any pixel is decoded, so a huge image is refused without being expanded in memory."""
    try:
        image = Image.open(io.BytesIO(body))
    except Exception:  # noqa: BLE001 - whatever Pillow makes of the bytes, they are not a PNG
        raise UploadError("the body is not a PNG image") from None
    if image.format != "PNG":
        raise UploadError(f"the body is a {image.format} image; masks are uploaded as PNG")
    if image.size != (width, height):
        raise UploadError(f"the mask is {image.size[0]}x{image.size[1]} but the image is {width}x{height} (width x height)")
    try:
        array = np.asarray(image)
    except Exception:  # noqa: BLE001 - a truncated or corrupt PNG
        raise UploadError("the PNG cannot be decoded (truncated or corrupt)") from None
    if array.ndim == 3:
        if array.shape[2] in (2, 4):
            if np.any(array[:, :, -1] != 255):
                raise UploadError("the mask has transparent pixels; send an opaque PNG")
            array = array[:, :, :-1]
        if np.any(array != array[:, :, :1]):
            raise UploadError("the mask's colour channels differ; send gray class indices")
        array = array[:, :, 0]
    values = np.unique(array)
    if num_classes == 1:
        for foreground in (1, 255):
            if np.isin(values, (0, foreground)).all():
                return (array == foreground).astype(np.uint8)
        raise UploadError(f"mask values {values[:8].tolist()} are not binary (0 and 1, or 0 and 255)")
    if values.max() >= num_classes:
        raise UploadError(f"mask values {values[:8].tolist()} are not class indices 0..{num_classes - 1}")
    return array.astype(np.uint8)


def read_labels(path: Path, num_classes: int) -> np.ndarray:
    """A mask PNG as a review writes it (binary: 0/255; classes: indices) -> (H, W) uint8 class indices."""
    raw = read_array(path, palette_indices=True)[:, :, 0]
    return (raw > 0).astype(np.uint8) if num_classes == 1 else raw.astype(np.uint8)


class LabelStore:
    """LABELS: reviewed masks, their history, the image copies and the journal."""

    def __init__(self, out_dir: Path, images_dir: Path, num_classes: int, classes: list[dict[str, Any]]) -> None:
        self.root, self.masks, self.history, self.images = out_dir, out_dir / "masks", out_dir / "history", out_dir / "images"
        self.copy_images = self.images.resolve() != images_dir.resolve()
        self.num_classes, self.classes, self.palette = num_classes, classes, class_colours(classes, num_classes)

    def prepare(self) -> None:
        """The folders, and for named classes a classes.yaml so `train --data LABELS` reads them alike."""
        make_dir(self.masks)
        if self.num_classes > 1 and self.classes and not (self.root / "classes.yaml").exists():
            entries = [{"name": c["name"], "color": [int(v) for v in self.palette[i]]} for i, c in enumerate(self.classes)]
            write_text(self.root / "classes.yaml", yaml.safe_dump({"classes": entries}, sort_keys=False))

    def mask_path(self, key: str) -> Path:
        return self.masks / f"{key}.png"

    def saved(self) -> set[str]:
        return {path.stem for path in self.masks.glob("*.png")} if self.masks.is_dir() else set()

    def read(self, key: str) -> np.ndarray | None:
        """The reviewed mask of `key` as (H, W) class indices, or None."""
        path = self.mask_path(key)
        return read_labels(path, self.num_classes) if path.is_file() else None

    def save(self, key: str, image_path: Path, mask: np.ndarray, previous: np.ndarray | None,
             seconds: float | None) -> Path:
        """Keep the earlier version, write the mask atomically, copy the image, journal the save; return the mask path."""
        final = self.mask_path(key)
        if final.is_file():
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"{time.time() % 1:.6f}"[1:].replace(".", "_")
            with atomic_path(self.history / key / f"{stamp}.png") as tmp:
                shutil.copyfile(final, tmp)
        if self.copy_images:
            self._copy_image(image_path)
        binary = self.num_classes == 1
        write_png(final, mask * 255 if binary else mask, palette=None if binary else self.palette)
        changed = int(np.count_nonzero(mask != previous)) if previous is not None and previous.shape == mask.shape \
            else int(mask.size)
        self._journal({"id": key, "image": str(image_path), "mask": str(final.relative_to(self.root)),
                       "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "seconds": None if seconds is None else round(seconds, 2), "pixels_changed": changed})
        return final

    def _copy_image(self, image_path: Path) -> None:
        target = self.images / image_path.name
        with contextlib.suppress(OSError):  # no copy yet
            if target.stat().st_size == image_path.stat().st_size and target.stat().st_mtime >= image_path.stat().st_mtime:
                return
        with atomic_path(target) as tmp:
            shutil.copyfile(image_path, tmp)

    def _journal(self, record: dict[str, Any]) -> None:
        make_dir(self.root)
        with (self.root / JOURNAL).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
