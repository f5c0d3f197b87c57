"""The named figures `evaluate --metrics` and `train.val_metrics` choose from (`MEASURES`), per class
and pooled, with percentile-bootstrap intervals over images (which classes each scores, regions,
intervals: docs/metrics.md). Records are kept per image (counts for the pooled iou and dice, values
for the means over images, AUC_BINS-bin histograms for auc), so that each bootstrap resample
recomputes every figure as the data set's, pooled figures pooled, in bounded memory. Boundary
figures and AUC are opt-in: a distance transform per image and class, a histogram per image.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from unetkit.errors import UserError

AUC_BINS = 2048  # probability bins of the AUC histograms (ties inside a bin count half, as tied scores do)
RESAMPLES = 1000  # bootstrap resamples (the default of `evaluate`)

# name -> (help, higher is better). "nsd@TOL" stands for every tolerance.
MEASURES: dict[str, tuple[str, bool]] = {
    "iou": ("intersection over union, pooled over pixels", True),
    "dice": ("Dice (= F1 of the pixels), pooled over pixels", True),
    "tgs_map": ("the TGS challenge score, mean over images", True),
    "hd95": ("95th-percentile symmetric Hausdorff distance, mean over images", False),
    "assd": ("average symmetric surface distance, mean over images", False),
    "nsd@TOL": ("normalised surface Dice at tolerance TOL (e.g. nsd@2), mean over images", True),
    "auc": ("ROC AUC of the probabilities over the pooled pixels", True),
}
_POOLED = ("iou", "dice")
_BOUNDARY = re.compile(r"hd95|assd|nsd@(\d+(?:\.\d+)?)")


def measure_names_help() -> str:
    """One line per registered name, for --help."""
    return "; ".join(f"{name}: {text}" for name, (text, _) in MEASURES.items())


def parse_measures(names: str | Sequence[str], where: str = "--metrics") -> tuple[str, ...]:
    """Validated names, in order, without repeats: "iou,dice,hd95,nsd@2" or a list of them."""
    out: list[str] = []
    for name in (n.strip() for n in (names.split(",") if isinstance(names, str) else names)):
        if not (name in MEASURES and name != "nsd@TOL" or _BOUNDARY.fullmatch(name)):
            raise UserError(f"{where}: unknown metric '{name}' (known: {', '.join(MEASURES)})")
        out.append(f"nsd@{float(name[4:]):g}" if name.startswith("nsd@") else name)
    if not out:
        raise UserError(f"{where}: name at least one metric (known: {', '.join(MEASURES)})")
    return tuple(dict.fromkeys(out))


def is_boundary(name: str) -> bool:
    """Whether `name` is a distance figure (hd95, assd, nsd@TOL): measured in the unit of the pixel size."""
    return _BOUNDARY.fullmatch(name) is not None


def monitor_minimizes(monitor: str) -> bool:
    """Whether a monitored value (val_loss, val_iou, val_hd95, ...) improves by going down."""
    name = monitor.removeprefix("val_")
    return name == "loss" or not MEASURES.get("nsd@TOL" if name.startswith("nsd@") else name, ("", True))[1]


def extra_columns(names: Sequence[str]) -> tuple[str, ...]:
    """The validation figures of `names` that metrics.csv does not already hold, as its column names val_NAME."""
    return tuple(f"val_{name}" for name in names if name not in ("iou", "dice", "tgs_map"))


@dataclass
class MeasureSet:
    """Per-image records of the chosen measures; `summary()` and `intervals()` give the data-set figures.
    `spacing` (dy, dx): the pixel size for distances (an image's own, given to `add`, wins; data/spacing.py)."""

    names: tuple[str, ...]
    num_classes: int = 1
    multilabel: bool = False
    ignore_index: int | None = None
    spacing: tuple[float, float] = (1.0, 1.0)
    counts: list[np.ndarray] = field(default_factory=list)  # per image (C, 3): TP, FP, FN
    values: dict[str, list[np.ndarray]] = field(default_factory=dict)  # per name, per image (C,)
    histograms: list[np.ndarray] = field(default_factory=list)  # per image (C, 2, AUC_BINS): negatives, positives

    @property
    def classes(self) -> list[int]:
        """The classes (labels) scored by every measure but iou and dice."""
        return list(range(self.num_classes)) if self.multilabel else list(range(1, max(self.num_classes, 2)))

    def add(self, pred: np.ndarray, truth: np.ndarray, probabilities: np.ndarray | None = None,
            region: np.ndarray | None = None, spacing: tuple[float, float] | None = None) -> dict[str, float]:
        """One image: pred and truth (H, W) class indices, or (K, H, W) 0/1 labels; probabilities (K, H, W)
        (one map for a binary model); region (H, W) bool; spacing (dy, dx) its pixel size (None: `self.spacing`).
        Returns its own figures (mean over classes)."""
        inside = np.ones(truth.shape[-2:], bool) if region is None else np.asarray(region, bool)
        if self.ignore_index is not None and not self.multilabel:
            inside = inside & (truth != self.ignore_index)
        own: dict[str, float] = {}
        if any(name in _POOLED for name in self.names):  # for several classes every class, as metrics.py
            pooled = self.classes if self.multilabel or self.num_classes == 1 else range(self.num_classes)
            counts = np.array([_counts(self._binary(pred, c), self._binary(truth, c), inside) for c in pooled], np.int64)
            self.counts.append(counts)
            own |= {name: float(_mean_present(_per_class_pooled(name, counts[None]))[0]) for name in self.names
                    if name in _POOLED}
        if "tgs_map" in self.names:  # the TGS score of the foreground's IoU, 1 where both are empty
            fg = [maps.any(axis=0) if self.multilabel else maps > 0 for maps in (pred, truth)]  # ignored: outside already
            iou = np.nan_to_num(_per_class_pooled("iou", np.array(_counts(*fg, inside))), nan=1.0)
            self.values.setdefault("tgs_map", []).append(np.array([np.mean(iou > np.arange(0.5, 1.0, 0.05)[:10])]))
        boundary = [name for name in self.names if is_boundary(name)]
        if boundary:
            from unetkit.boundary import boundary_figures  # scipy.ndimage: imported when used, not by --help

            tolerances = [float(name[4:]) for name in boundary if name.startswith("nsd@")]
            figures = [boundary_figures(self._binary(pred, c) & inside, self._binary(truth, c) & inside,
                                        spacing or self.spacing, tolerances) for c in self.classes]
            for name in boundary:
                self.values.setdefault(name, []).append(np.array([f[name] for f in figures]))
        if "auc" in self.names:
            if probabilities is None:
                raise ValueError("auc needs the probabilities")
            self.histograms.append(np.stack([self._histogram(probabilities, truth, c, inside) for c in self.classes]))
            own["auc"] = float(np.mean(_auc(self.histograms[-1][None])[0]))
        return own | {name: float(np.mean(self.values[name][-1])) for name in self.values}

    def _binary(self, maps: np.ndarray, c: int) -> np.ndarray:
        return maps[c].astype(bool) if self.multilabel else (maps == c) if self.num_classes > 1 else maps > 0

    def _histogram(self, probabilities: np.ndarray, truth: np.ndarray, c: int, inside: np.ndarray) -> np.ndarray:
        scores = probabilities[0 if probabilities.shape[0] == 1 else c][inside]
        positive = self._binary(truth, c)[inside]
        bins = np.clip((scores * AUC_BINS).astype(np.int64), 0, AUC_BINS - 1)
        return np.stack([np.bincount(bins[~positive], minlength=AUC_BINS), np.bincount(bins[positive], minlength=AUC_BINS)])

    @staticmethod
    def merged(shares: list[MeasureSet], order: Sequence[int]) -> MeasureSet:
        """One set from the ranks' shares, its images put in `order` (each record's place in the folder),
        so the bootstrap draws the same resamples however the images were shared out."""
        rank = np.argsort(np.asarray(order), kind="stable")

        def ordered(records: list[np.ndarray]) -> list[np.ndarray]:
            return [records[i] for i in rank] if records else []

        names = dict.fromkeys(name for s in shares for name in s.values)
        return dataclasses.replace(shares[0], counts=ordered([c for s in shares for c in s.counts]),
                                   histograms=ordered([h for s in shares for h in s.histograms]),
                                   values={n: ordered([v for s in shares for v in s.values.get(n, [])]) for n in names})

    def __len__(self) -> int:
        return max(len(self.counts), len(self.histograms), *(len(v) for v in self.values.values()), 0)

    def summary(self) -> dict[str, float | list[float]]:
        """name -> the data-set figure (pooled over classes); name_per_class -> per class, for several classes."""
        return {key: value[0] for key, value in self._statistics(np.ones((1, len(self)))).items()}

    def intervals(self, resamples: int = RESAMPLES, seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """name -> (low, high): the percentile bootstrap interval over images of each pooled figure."""
        if (n := len(self)) == 0:
            return {}
        weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
        tail = 100 * (1 - level) / 2
        bounds = {name: np.percentile(np.asarray(values, np.float64), [tail, 100 - tail])
                  for name, values in self._statistics(weights).items() if not name.endswith("_per_class")}
        return {name: (float(low), float(high)) for name, (low, high) in bounds.items()}

    def _statistics(self, weights: np.ndarray) -> dict[str, list]:
        """Every figure for each row of image weights (R, N): name -> R values (per class: R lists)."""
        out: dict[str, list] = {}
        for name in self.names:
            if name in _POOLED:
                per_class = _per_class_pooled(name, np.einsum("rn,nck->rck", weights, np.stack(self.counts)))
            elif name == "auc":
                hist = np.stack(self.histograms)
                per_class = np.concatenate([_auc(np.einsum("rn,nckb->rckb", weights[i:i + 64], hist))
                                            for i in range(0, len(weights), 64)])
            else:
                per_class = weights @ np.stack(self.values[name]) / weights.sum(axis=1, keepdims=True)
            out[name] = list(_mean_present(per_class) if name in _POOLED else per_class.mean(axis=1))
            if len(per_class[0]) > 1:
                out[f"{name}_per_class"] = [list(row) for row in np.nan_to_num(per_class, nan=1.0)]
        return out


def _counts(pred: np.ndarray, truth: np.ndarray, inside: np.ndarray) -> tuple[int, int, int]:
    p, t = pred & inside, truth & inside
    return int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())


def _per_class_pooled(name: str, counts: np.ndarray) -> np.ndarray:
    """(R, C, 3) summed counts -> (R, C) iou or dice; NaN where a class is absent from truth and prediction."""
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    numerator, denominator = (tp, tp + fp + fn) if name == "iou" else (2 * tp, 2 * tp + fp + fn)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def _mean_present(per_class: np.ndarray) -> np.ndarray:
    """(R, C) with NaN for absent classes -> (R,) mean over the classes present; 1.0 where none is."""
    present = ~np.isnan(per_class)
    total = np.where(present, per_class, 0.0).sum(axis=1)
    return np.where(present.any(axis=1), total / np.maximum(present.sum(axis=1), 1), 1.0)


def _auc(hist: np.ndarray) -> np.ndarray:
    """(..., 2, BINS) negative and positive counts by score bin -> (...) ROC AUC (ties count half);
    0.5 where a class has no positives or no negatives (the AUC is undefined there)."""
    negatives, positives = hist[..., 0, :], hist[..., 1, :]
    below = np.cumsum(negatives, axis=-1) - negatives  # negatives scored in lower bins
    wins = (positives * (below + 0.5 * negatives)).sum(axis=-1)
    pairs = positives.sum(axis=-1) * negatives.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / np.maximum(pairs, 1), 0.5)
