"""The review order: how doubtful the model is about an image, and how far its mask is from a given one.

The doubt score is the share of pixels whose two most probable classes lie within 0.6 of each other
(binary: a probability between 0.2 and 0.8). It needs only the one prediction the page shows (TTA
disagreement would cost 2-8 more passes), reads as a fact a labeller can check on the overlay, and
grows both with a wavering boundary and with whole regions the model cannot decide: the masks worth
correcting first. A confident mistake scores low, hence the IoU against a given mask beside it. Mean
entropy ranks nearly alike but counts the near-certain pixels of every image a little.
"""

from __future__ import annotations

import numpy as np
import torch

from unetkit.metrics import class_counts, iou_from_counts

DOUBT_MARGIN = 0.6  # pixels whose top two class probabilities lie closer than this are doubtful


def doubt_score(probabilities: np.ndarray) -> float:
    """(K, H, W) probabilities -> the share of doubtful pixels in [0, 1]. K = 1: foreground probability
    (binary); K >= 2: softmax over classes (independent labels count each label as a binary map)."""
    if probabilities.shape[0] == 1:
        margin = np.abs(2.0 * probabilities[0] - 1.0)
    else:
        top2 = np.partition(probabilities, probabilities.shape[0] - 2, axis=0)[-2:]
        margin = top2[1] - top2[0]
    return float(np.mean(margin < DOUBT_MARGIN))


def mask_iou(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> float:
    """IoU of two (H, W) class-index maps: of the foreground (binary), else the mean over the classes
    1..K-1 present in either; 1.0 where both are empty (unetkit.metrics' convention)."""
    counts = class_counts(torch.from_numpy(predicted)[None], torch.from_numpy(truth)[None], max(num_classes, 2))[1:]
    present = counts[:, :3].sum(1) > 0  # TP + FP + FN: the class is in either map
    return float(iou_from_counts(counts[present]).mean()) if present.any() else 1.0


def review_order(scores: dict[str, float]) -> list[str]:
    """Ids, most doubtful first; ties by id so the order is the same on every start."""
    return sorted(scores, key=lambda key: (-scores[key], key))
