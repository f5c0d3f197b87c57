"""The data sets benchmarks/quality.py measures on: where each lives, how it is split, what it is scored by.

Each set in ../shared/data/ (see its README) has a fixed split into held-out folds (seed 0), its
training layer (classes, ignored value), the measures `unetkit.evaluate` reports for it and the
figures the table shows, each taken from evaluate's output by one function, so unetkit's runs and
the peer's are read alike:
- tgs-salt: 2 coverage-stratified folds, both held out in turn; TGS mAP and IoU.
- drive-train: 5 coverage-stratified folds, fold 0 held out (4 of 20 images, 16 train, as earlier
  measurements did); F1 (= pooled Dice), ROC AUC and HD95, inside `fov/`.
- isbi-train: as drive-train (4 of 20 slices); the IoU of the membranes (value 0), of the cells
  (255, the binary foreground) and their mean. A binary model's evaluate reports the foreground's
  IoU and the pixel accuracy of the same confusion counts; the membranes' IoU follows from the two
  (`membrane_iou`).
- camvid-train: 5 folds of contiguous frames, fold 0 held out: the first fifth of each video
  sequence's frames (by name). Consecutive labelled frames are a second apart and nearly the same
  picture, so a random split would score frames whose neighbours were trained on. 11 classes,
  void (11) ignored; mean IoU and every class's IoU.
A folder given by path that is none of these is a binary set scored like drive-train without a
region (IoU and Dice).

`--quick` trains on a synthetic stand-in of the set's kind (`synthetic_like`): a few tiny binary
pairs, with a field-of-view folder for drive-train and, for camvid-train, every class (the shape over
vertical bands of the others) and ignored pixels, so the smoke test takes every path the real sets take.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.data.io import read_array, write_png
from unetkit.data.masks import decode_mask
from unetkit.data.pairing import Pair, find_pairs
from unetkit.data.split import coverage_classes, stratified_folds, stratified_split
from unetkit.data.synthetic import generate_synthetic

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CAMVID_CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car", "pedestrian",
                  "bicyclist")

Figures = Callable[[dict[str, Any]], dict[str, float]]


@dataclass(frozen=True)
class QualitySet:
    """One data set of the table: its split, training layer, evaluate's measures and the figures shown."""

    name: str
    folds: int  # the split: this many folds
    held_out: tuple[int, ...] | None  # the folds held out by default (None: each in turn)
    split: str  # "coverage": coverage-stratified folds; "sequence": contiguous blocks of each sequence
    measures: str  # evaluate's metrics
    figures: Figures  # evaluate's output -> the table's figures, the headline first
    budget_min: float  # the budget for this set
    recipes: str  # the default rows
    num_classes: int = 1
    ignore_index: int | None = None
    fov: bool = False  # score inside DIR/fov/
    tgs_threshold: bool = False  # named recipes tune their threshold for TGS mAP (as this table always did)

    def train_layer(self) -> dict[str, Any]:
        """The config fields every run of this set is given (a new user's --num-classes and --set)."""
        layer: dict[str, Any] = {}
        if self.num_classes > 1:
            layer["model"] = {"num_classes": self.num_classes}
        if self.ignore_index is not None:
            layer["data"] = {"ignore_index": self.ignore_index}
        return layer


def membrane_iou(foreground_iou: float, pixel_accuracy: float) -> float:
    """The background's IoU of a binary confusion from the foreground's IoU i = TP / (TP + E) and the
    accuracy a = 1 - E (E = FP + FN, all as fractions of the pixels): TP = iE / (1 - i),
    TN = 1 - E - TP, and the background's IoU is TN / (TN + E)."""
    errors = 1.0 - pixel_accuracy
    if errors <= 0.0:
        return 1.0
    true_positive = foreground_iou * errors / (1.0 - foreground_iou)
    true_negative = 1.0 - errors - true_positive
    return true_negative / (true_negative + errors)


def _tgs(m: dict[str, Any]) -> dict[str, float]:
    return {"tgs_map": m["tgs_map"], "iou": m["iou"]}


def _drive(m: dict[str, Any]) -> dict[str, float]:
    return {"f1": m["dice"], "auc": m["auc"], "hd95": m["hd95"]}


def _isbi(m: dict[str, Any]) -> dict[str, float]:
    membrane = membrane_iou(m["iou"], m["pixel_accuracy"])
    return {"mean_iou": (membrane + m["iou"]) / 2, "membrane_iou": membrane, "cell_iou": m["iou"]}


def _camvid(m: dict[str, Any]) -> dict[str, float]:
    return {"mean_iou": m["iou"]} | {f"iou_{name}": float(v) for name, v in zip(CAMVID_CLASSES, m["iou_per_class"])}


def _binary(m: dict[str, Any]) -> dict[str, float]:
    return {"iou": m["iou"], "dice": m["dice"]}


SETS: dict[str, QualitySet] = {s.name: s for s in (
    QualitySet("tgs-salt", 2, None, "coverage", "iou,dice,tgs_map", _tgs, 10, "default,best,smp", tgs_threshold=True),
    QualitySet("drive-train", 5, (0,), "coverage", "iou,dice,auc,hd95", _drive, 10, "default,best,smp", fov=True),
    QualitySet("isbi-train", 5, (0,), "coverage", "iou,dice", _isbi, 10, "default,best,smp"),
    QualitySet("camvid-train", 5, (0,), "sequence", "iou,dice", _camvid, 15, "default,best,fast,smp",
               num_classes=11, ignore_index=11),
)}
CUSTOM = QualitySet("custom", 5, (0,), "coverage", "iou,dice", _binary, 10, "default,best,smp")


def find_set(name_or_path: str) -> tuple[QualitySet, Path]:
    """A set by name (in ../shared/data) or by folder; a folder named like a set is that set."""
    if name_or_path in SETS:
        return SETS[name_or_path], SHARED / name_or_path
    path = Path(name_or_path)
    return SETS.get(path.resolve().name, CUSTOM), path


def held_out_folds(spec: QualitySet, pairs: list[Pair], folds: int,
                   max_images: int | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """(the pairs used, the `folds` held-out index arrays of the set's split), seed 0. `max_images`: a
    coverage-stratified subset first (quick looks; coverage splits only)."""
    if spec.split == "sequence":
        sequences: dict[str, list[int]] = {}
        for i, pair in enumerate(pairs):
            sequences.setdefault(pair.stem.rsplit("_", 1)[0], []).append(i)
        chunks = [np.array_split(np.array(sorted(members, key=lambda i: pairs[i].stem)), folds)
                  for members in sequences.values()]
        return np.arange(len(pairs)), [np.sort(np.concatenate([chunk[f] for chunk in chunks])) for f in range(folds)]
    coverage = [(decode_mask(read_array(pair.mask), spec.num_classes, pair.mask, spec.ignore_index) > 0).mean()
                for pair in pairs]
    strata = coverage_classes(np.array(coverage))
    chosen = np.arange(len(pairs))
    if max_images and max_images < len(pairs):
        chosen = stratified_split(strata, max_images / len(pairs), seed=0)[1]
    return chosen, [chosen[f] for f in stratified_folds(strata[chosen], folds, seed=0)]


def synthetic_like(spec: QualitySet, root: Path) -> Path:
    """A tiny synthetic set shaped like `spec` (see the module docstring)."""
    data = generate_synthetic(root, 24, size=32, seed=7)
    if spec.fov:
        yy, xx = np.mgrid[:32, :32]
        disc = (((yy - 15.5) ** 2 + (xx - 15.5) ** 2) < 15**2).astype(np.uint8) * 255
        for pair in find_pairs(data):
            write_png(data / "fov" / pair.mask.name, disc)
    if spec.num_classes > 1:
        for pair in find_pairs(data):
            shape = (read_array(pair.mask) > 0).reshape(32, 32)
            bands = np.array([0, *range(2, spec.num_classes)])[np.arange(32) * (spec.num_classes - 1) // 32]
            mask = np.where(shape, 1, np.broadcast_to(bands, (32, 32))).astype(np.uint8)  # the shape over bands
            mask[:, -2:] = spec.ignore_index if spec.ignore_index is not None else 0
            write_png(pair.mask, mask)
    return data
