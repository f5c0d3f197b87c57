"""The model's masks, doubt scores and thumbnails for every image of a review, computed once and cached.

The cache is LABELS/predictions/<key>/, the key a hash of the model file's bytes and the inference
options: another model or other options get a folder of their own, and a restart with the same model
reads index.json instead of predicting (images changed since are predicted again). index.json is
rewritten every INDEX_EVERY images, so an interrupted first start resumes, not restarts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from unetkit.config import InferenceOptions, to_dict
from unetkit.data.dataset import read_mask
from unetkit.data.io import read_array, to_channels, write_png
from unetkit.data.masks import ClassPalette
from unetkit.data.regions import image_size
from unetkit.errors import UserError
from unetkit.export.model_file import SavedModel
from unetkit.fileio import file_sha256, make_dir, write_text
from unetkit.inference.predictor import Predictor
from unetkit.review.ranking import doubt_score, mask_iou
from unetkit.runtime import log, progress
from unetkit.visualize import blend_overlay, class_colours

THUMB_SIDE = 96  # pixels, the longer side of a list thumbnail
INDEX_EVERY = 200  # images between two writes of index.json during the first prediction


@dataclass
class Entry:
    """What the list shows of one image, and the file state it was computed from."""

    score: float
    iou: float | None
    stamp: list[int]  # the image's (and its given mask's) size and mtime_ns when predicted
    height: int
    width: int


def file_stamp(*paths: Path | None) -> list[int]:
    """Sizes and modification times of the files (missing ones count as zeros)."""
    out: list[int] = []
    for path in paths:
        try:
            out += [(info := path.stat()).st_size, info.st_mtime_ns] if path is not None else [0, 0]
        except OSError:
            out += [0, 0]
    return out


def read_truth(path: Path, num_classes: int, palette: ClassPalette | None = None) -> np.ndarray:
    """A given mask -> (H, W) uint8 class indices as `train` reads it (through `palette`, the --masks folder's
    classes.yaml, where it has one), or a UserError naming the file. The editor paints classes only: pixels
    classes.yaml marks as ignored start as background."""
    mask = read_mask(path, num_classes, palette=palette)
    if palette is not None:
        mask[mask == palette.ignore_to] = 0
    return mask


def encode_png(array: np.ndarray) -> bytes:
    """(H, W) or (H, W, 3) uint8 as PNG bytes (fast compression: these go to a browser once)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class PredictionCache:
    """Predicted masks and scores of every image, under LABELS/predictions/<model and options key>/."""

    def __init__(self, root: Path, model_path: Path, saved: SavedModel, options: InferenceOptions,
                 truth_palette: ClassPalette | None = None) -> None:
        self.model_path, self.saved, self.options, self.truth_palette = model_path, saved, options, truth_palette
        self.record = {"model_sha256": file_sha256(model_path), "options": to_dict(options)}
        self.key = hashlib.sha256(json.dumps(self.record, sort_keys=True).encode()).hexdigest()[:16]
        self.folder = root / self.key
        self.entries: dict[str, Entry] = self._read_index()

    def _read_index(self) -> dict[str, Entry]:
        try:
            data = json.loads((self.folder / "index.json").read_text(encoding="utf-8"))
            return {key: Entry(**value) for key, value in data["items"].items()} if data["record"] == self.record else {}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def _write_index(self) -> None:
        items = {key: dataclasses.asdict(entry) for key, entry in self.entries.items()}
        write_text(self.folder / "index.json", json.dumps({"record": self.record, "items": items}))

    def mask_path(self, key: str) -> Path:
        return self.folder / "masks" / f"{key}.png"

    def thumb_path(self, key: str) -> Path:
        return self.folder / "thumbs" / f"{key}.png"

    def update(self, images: dict[str, Path], truths: dict[str, Path]) -> int:
        """Predict the images that have no current entry; return how many were predicted."""
        todo = [key for key, path in images.items()
                if key not in self.entries or self.entries[key].stamp != file_stamp(path, truths.get(key))
                or not self.mask_path(key).is_file()]
        if not todo:
            return 0
        make_dir(self.folder)
        log.info("predicting %d of %d images with %s (cached in %s)", len(todo), len(images), self.model_path, self.folder)
        predictor = Predictor(self.saved, self.options)
        todo.sort(key=lambda key: image_size(images[key]))  # images of one size share batches
        reads = ((key, to_channels(read_array(images[key]), self.saved.config.in_channels, images[key])) for key in todo)
        results = progress(predictor.run(reads), total=len(todo), desc="review: predict", unit="img")
        try:
            for done, (key, image, prob) in enumerate(results, 1):
                self._store(key, image, prob, predictor, file_stamp(images[key], truths.get(key)), truths.get(key))
                if done % INDEX_EVERY == 0:
                    self._write_index()
        finally:
            results.close()
            self._write_index()
        return len(todo)

    def _store(self, key: str, image: np.ndarray, prob: np.ndarray, predictor: Predictor, stamp: list[int],
               truth_path: Path | None) -> None:
        mask = predictor.to_mask(prob)
        k = self.saved.config.num_classes
        write_png(self.mask_path(key), mask * 255 if k == 1 else mask)
        thumb = Image.fromarray(blend_overlay(image, mask, palette=class_colours(self.saved.classes, k)))
        thumb.thumbnail((THUMB_SIDE, THUMB_SIDE))
        write_png(self.thumb_path(key), np.asarray(thumb))
        iou = None
        if truth_path is not None:
            try:
                truth = read_truth(truth_path, k, self.truth_palette)
                iou = mask_iou(mask, truth, k) if truth.shape == mask.shape else None
            except UserError as exc:
                log.warning("%s", exc)
        self.entries[key] = Entry(doubt_score(prob), iou, stamp, int(mask.shape[0]), int(mask.shape[1]))
