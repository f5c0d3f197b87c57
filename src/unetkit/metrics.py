"""Segmentation metrics as pure functions of predicted and true class-index maps.

Conventions (shared by training, `evaluate` and the tests): per image, IoU and Dice of the
foreground, 1 where truth and prediction are both empty (as in the TGS challenge); data-set IoU
and Dice pooled over pixels (totals of TP, FP, FN), so images weigh by their pixels (several
classes: the mean over classes); TGS mAP is the challenge's metric (../shared/data/tgs-salt/README.md),
per image the mean over t in 0.50, ..., 0.95 of [IoU > t], for several classes on any foreground.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

TGS_THRESHOLDS = torch.arange(0.5, 1.0, 0.05, dtype=torch.float64)[:10]


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    if pred.dim() not in (3, 4):
        raise ValueError(f"expected (B, H, W) label maps (or (B, K, H, W) multi-label), got {pred.dim()} dimensions")


def binary_counts(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per image (TP, FP, FN, TN) of foreground (non-zero) pixels: (B, H, W) or (B, K, H, W) -> (B, 4) int64."""
    _check(pred, target)
    p, t = pred.bool().flatten(1), target.bool().flatten(1)
    tp, fp, fn = (p & t).sum(1), (p & ~t).sum(1), (~p & t).sum(1)
    return torch.stack([tp, fp, fn, p.shape[1] - tp - fp - fn], dim=1)


def _ratio(counts: torch.Tensor, tp_weight: int) -> torch.Tensor:
    tp, fp, fn = counts[..., 0].double() * tp_weight, counts[..., 1].double(), counts[..., 2].double()
    denominator = tp + fp + fn
    return torch.where(denominator > 0, tp / denominator.clamp(min=1), torch.ones_like(denominator))


def iou_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """IoU = TP / (TP + FP + FN) per row of (..., 4) counts; 1.0 where both masks are empty."""
    return _ratio(counts, 1)


def dice_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """Dice = 2TP / (2TP + FP + FN) per row of (..., 4) counts; 1.0 where both masks are empty."""
    return _ratio(counts, 2)


def iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Foreground IoU per image, (B, H, W) -> (B,) float64."""
    return iou_from_counts(binary_counts(pred, target))


def dice(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Foreground Dice per image, (B, H, W) -> (B,) float64."""
    return dice_from_counts(binary_counts(pred, target))


def tgs_score_from_iou(image_iou: torch.Tensor) -> torch.Tensor:
    """TGS score per image from its IoU: mean over t in 0.50..0.95 of [IoU > t]."""
    return (image_iou.double()[:, None] > TGS_THRESHOLDS[None, :]).double().mean(1)


def tgs_score(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """TGS challenge score per image, (B, H, W) -> (B,) float64 in {0, 0.1, ..., 1}."""
    return tgs_score_from_iou(iou(pred, target))


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = None) -> torch.Tensor:
    """(K, K) int64 pixel counts, rows = true class, columns = predicted class; ignored pixels excluded."""
    _check(pred, target)
    p, t = pred.flatten().long(), target.flatten().long()
    keep = (t < num_classes) & (p < num_classes) if ignore_index is None else (t != ignore_index) & (p < num_classes)
    return torch.bincount(t[keep] * num_classes + p[keep], minlength=num_classes * num_classes).view(num_classes, num_classes)


def counts_from_confusion(confusion: torch.Tensor) -> torch.Tensor:
    """Per class (TP, FP, FN, TN) from a (K, K) confusion matrix: (K, 4)."""
    tp = confusion.diagonal()
    fp, fn = confusion.sum(0) - tp, confusion.sum(1) - tp
    return torch.stack([tp, fp, fn, confusion.sum() - tp - fp - fn], dim=1)


def class_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per class (TP, FP, FN, TN) summed over the batch: (B, H, W) class indices -> (K, 4) int64."""
    return counts_from_confusion(confusion_matrix(pred, target, num_classes))


@dataclass
class MetricAccumulator:
    """Sums a confusion matrix over batches and keeps per-image scores; `summary()` gives the figures."""

    num_classes: int = 1
    ignore_index: int | None = None
    multilabel: bool = False  # (B, K, H, W) 0/1 maps: per-label counts instead of a confusion matrix
    confusion: torch.Tensor = field(init=False)
    label_counts: torch.Tensor = field(init=False)
    image_iou: list[float] = field(default_factory=list)
    image_dice: list[float] = field(default_factory=list)
    image_score: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        size = max(self.num_classes, 2)
        self.confusion = torch.zeros(size, size, dtype=torch.int64)
        self.label_counts = torch.zeros(self.num_classes, 4, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor, region: torch.Tensor | None = None) -> None:
        """Add a batch of (B, H, W) predicted and true class indices, or (B, K, H, W) 0/1 label maps;
        pixels outside `region` ((B, H, W) bool, a field of view) count nowhere."""
        pred, target = pred.cpu(), target.cpu()
        outside = None if region is None else ~region.cpu().bool()
        if self.multilabel:
            if outside is not None:
                pred, target = pred.masked_fill(outside[:, None], 0), target.masked_fill(outside[:, None], 0)
            counts = binary_counts(pred.transpose(0, 1), target.transpose(0, 1))  # (K, 4): each label over the batch
            counts[:, 3] -= 0 if outside is None else int(outside.sum())  # the zeroed outside pixels are no true negatives
            self.label_counts += counts
        else:
            ignored_value = 255 if self.ignore_index is None else self.ignore_index
            if outside is not None:  # outside: the ignored value, or one past the classes the confusion counts
                target = target.masked_fill(outside, ignored_value)
            self.confusion += confusion_matrix(pred, target, len(self.confusion), self.ignore_index)
            if self.ignore_index is not None or outside is not None:  # per-image scores: ignored pixels count nowhere
                ignored = target == ignored_value
                target, pred = target.masked_fill(ignored, 0), pred.masked_fill(ignored, 0)
        image_iou = iou(pred, target)
        self.image_iou += image_iou.tolist()
        self.image_dice += dice(pred, target).tolist()
        self.image_score += tgs_score_from_iou(image_iou).tolist()

    def merge(self, other: MetricAccumulator) -> None:
        """Add what `other` accumulated (another rank's share of the images)."""
        self.confusion += other.confusion
        self.label_counts += other.label_counts
        self.image_iou += other.image_iou
        self.image_dice += other.image_dice
        self.image_score += other.image_score

    @staticmethod
    def merged(shares: list[MetricAccumulator]) -> MetricAccumulator:
        """One accumulator from the ranks' shares, merged in rank order (the same figures on every rank)."""
        combined = shares[0]
        for other in shares[1:]:
            combined.merge(other)
        return combined

    def summary(self) -> dict[str, Any]:
        """iou, dice (pooled; mean over classes present for several), pixel_accuracy, tgs_map, ...; for
        several classes or labels also class_iou, class_dice (1.0 for a class absent from truth and
        prediction), for several classes foreground_iou (over classes 1..K-1 present) and confusion_matrix."""
        n = len(self.image_iou)
        totals = self.label_counts if self.multilabel else counts_from_confusion(self.confusion)
        # Binary: the foreground class alone. Several: every class (label) that occurs in truth or prediction.
        classes = totals[1:] if self.num_classes == 1 and not self.multilabel else totals
        present = classes[:, :3].sum(1) > 0
        scored = classes[present]
        correct, pixels = ((totals[:, 0] + totals[:, 3]).sum(), totals.sum()) if self.multilabel else (
            self.confusion.diagonal().sum(), self.confusion.sum())
        out: dict[str, Any] = {
            "iou": float(iou_from_counts(scored).mean()) if len(scored) else 1.0,
            "dice": float(dice_from_counts(scored).mean()) if len(scored) else 1.0,
            "pixel_accuracy": float(correct) / max(float(pixels), 1.0),
            "tgs_map": sum(self.image_score) / n if n else 0.0,
            "mean_image_iou": sum(self.image_iou) / n if n else 0.0,
            "n_images": n,
        }
        if self.multilabel or self.num_classes > 1:
            out["class_iou"] = iou_from_counts(totals).tolist()
            out["class_dice"] = dice_from_counts(totals).tolist()
        if self.num_classes > 1 and not self.multilabel:
            foreground = totals[1:][present[1:]]
            out["foreground_iou"] = float(iou_from_counts(foreground).mean()) if len(foreground) else 1.0
            out["confusion_matrix"] = self.confusion.tolist()
        return out
