"""One review: the images, the model and its cached predictions, the label store; no HTTP here.

Ids are the image files' stems, and only ids found when the review started resolve to a file: a path
is never built from what a request sent, so nothing outside the images, masks and output folders can
be read or written (server.py logs what does not resolve)."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.config import InferenceOptions, ReviewConfig
from unetkit.data.layout_hints import MASK_SUFFIX
from unetkit.data.masks import read_class_palette
from unetkit.data.naming import list_images
from unetkit.data.pairing import DataSource
from unetkit.errors import UserError
from unetkit.export.model_file import SavedModel, load_model
from unetkit.fileio import make_dir
from unetkit.review.imagery import DisplayImages
from unetkit.review.predictions import PredictionCache, encode_png, read_truth
from unetkit.review.ranking import DOUBT_MARGIN, review_order
from unetkit.review.store import LabelStore, parse_mask_png, read_labels
from unetkit.runtime import log


def _given_masks(masks_dir: Path, images: dict[str, Path]) -> dict[str, Path]:
    """--masks: the mask file of each image (ID.* or ID_mask.*), read only."""
    masks = list_images(masks_dir)
    keys = {stem: stem if stem in images else stem.removesuffix(MASK_SUFFIX) for stem in masks}
    return {key: masks[stem] for stem, key in keys.items() if key in images}


def _check_folders(config: ReviewConfig) -> tuple[Path, Path, Path | None]:
    images_dir, out_dir = Path(config.images_dir), Path(config.out_dir)
    masks_dir = Path(config.masks_dir) if config.masks_dir else None
    if not images_dir.is_dir():
        raise UserError(f"{images_dir}: --images folder not found")
    if masks_dir is not None and not masks_dir.is_dir():
        raise UserError(f"{masks_dir}: --masks folder not found")
    if masks_dir is not None and (out_dir / "masks").resolve() == masks_dir.resolve():
        raise UserError(f"{out_dir}: --out would write into the --masks folder {masks_dir}; choose another --out")
    if out_dir.resolve() in (images_dir.resolve(), *(p.resolve() for p in [masks_dir] if p)):
        raise UserError(f"{out_dir}: --out must not be the --images or --masks folder")
    return images_dir, out_dir, masks_dir


class ReviewSession:
    """The state the page works on, from server threads. `lock` keeps a model swap whole and saves one at a time;
    a lone read of `cache` needs none (a swap replaces the object, never changes the old one)."""

    def __init__(self, config: ReviewConfig) -> None:
        self.config = config
        images_dir, self.out_dir, masks_dir = _check_folders(config)
        self.images = list_images(images_dir)
        if not self.images:
            raise UserError(f"{images_dir}: no images found")
        self.truths = _given_masks(masks_dir, self.images) if masks_dir else {}
        self.pictures = DisplayImages(self.images)
        self.options = InferenceOptions(**{f.name: getattr(config, f.name) for f in dataclasses.fields(InferenceOptions)})
        self.saved = self._load(Path(config.model_path))
        self.num_classes = self.saved.config.num_classes
        self.truth_palette = read_class_palette(DataSource(masks_dir=str(masks_dir)), self.num_classes) \
            if masks_dir and self.num_classes > 1 else None  # --masks as `train` reads them: classes.yaml beside
        self.store = LabelStore(self.out_dir, images_dir, self.num_classes, self.saved.classes)
        make_dir(self.out_dir)
        self.store.prepare()
        self.lock = threading.RLock()
        self.use_model(Path(config.model_path), self.saved)

    @staticmethod
    def _load(path: Path) -> SavedModel:
        saved = load_model(path)
        if saved.config.multilabel:
            raise UserError(f"{path}: multi-label models cannot be reviewed yet (one class per pixel only)")
        return saved

    def use_model(self, path: Path, saved: SavedModel | None = None) -> None:
        """Predict with the model file `path` (`saved`: already loaded) and rank by it from now on."""
        saved = saved or self._load(path)
        cache = PredictionCache(self.out_dir / "predictions", path, saved, self.options, self.truth_palette)
        cache.update(self.images, self.truths)
        with self.lock:
            self.model_path, self.saved, self.cache = path, saved, cache

    def items(self) -> list[dict[str, Any]]:
        """The review order: {"id", "score", "iou", "reviewed", "width", "height"} per image, most doubtful first."""
        entries = self.cache.entries
        saved = self.store.saved()
        scores = {key: entries[key].score for key in self.images if key in entries}
        return [{"id": key, "score": round(scores[key], 6), "iou": None if entries[key].iou is None
                 else round(entries[key].iou, 6), "reviewed": key in saved, "width": entries[key].width,
                 "height": entries[key].height} for key in review_order(scores)]

    def info(self) -> dict[str, Any]:
        """What the page needs to know once: classes and colours, the model, what the score counts."""
        names = [c.get("name") for c in self.saved.classes] or (["background", "foreground"] if self.num_classes == 1
                                                                else [f"class {i}" for i in range(self.num_classes)])
        colours = self.store.palette.tolist()
        return {"num_classes": self.num_classes, "classes": [{"name": n, "color": c} for n, c in zip(names, colours)],
                "model": str(self.model_path), "n_images": len(self.images), "score": "share of pixels whose two most "
                f"probable classes lie within {DOUBT_MARGIN} (binary: probability between {(1 - DOUBT_MARGIN) / 2:.1f} "
                f"and {(1 + DOUBT_MARGIN) / 2:.1f})"}

    def thumbnail(self, key: str) -> bytes:
        return self.cache.thumb_path(key).read_bytes()

    def prediction_png(self, key: str) -> bytes:
        """The predicted mask in the wire format: binary 0/255, classes as gray indices."""
        return self.cache.mask_path(key).read_bytes()

    def current_mask(self, key: str) -> np.ndarray | None:
        """(H, W) class indices the editor starts from: the reviewed mask, else the given one, else None."""
        mask = self.store.read(key)
        if mask is None and key in self.truths:
            try:
                mask = read_truth(self.truths[key], self.num_classes, self.truth_palette)
            except UserError as exc:
                log.warning("%s", exc)
        return mask

    def mask_png(self, key: str) -> bytes | None:
        mask = self.current_mask(key)
        return None if mask is None else encode_png(mask * 255 if self.num_classes == 1 else mask)

    def save(self, key: str, body: bytes, seconds: float | None) -> str:
        """Validate and store an uploaded mask; the saved path relative to --out (UploadError: one line)."""
        entry = self.cache.entries[key]
        mask = parse_mask_png(body, entry.height, entry.width, self.num_classes)
        with self.lock:  # one save at a time: two saves of one image each keep the version before them
            previous = self.current_mask(key)
            if previous is None:
                previous = read_labels(self.cache.mask_path(key), self.num_classes)
            path = self.store.save(key, self.images[key], mask, previous, seconds)
        return path.relative_to(self.out_dir).as_posix()
