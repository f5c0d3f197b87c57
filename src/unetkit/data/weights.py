"""The U-Net paper's weight map, which teaches the network to separate touching objects.

w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2)), where d1 and d2 are the distances to the nearest and
second-nearest object (Ronneberger et al. 2015, eq. 2). The class term w_c comes from the loss's class weights; this
module computes the border term, on background pixels, once per training mask.

Each object's distance transform is taken only in its bounding box grown by the distance at which the term has vanished
(d1 + d2 > 4 sigma gives < exp(-8) of w0), so memory stays O(H x W) and time O(objects x their surroundings) even for
masks with thousands of cells.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def border_weights(mask: np.ndarray, w0: float = 10.0, sigma: float = 5.0, ignore_index: int | None = None) -> np.ndarray:
    """Border term (H, W) float32 of a class-index mask (H, W). Objects are connected regions of one foreground
    class (touching objects of different classes stay apart); pixels of `ignore_index` belong to none."""
    foreground = (mask > 0) if ignore_index is None else (mask > 0) & (mask != ignore_index)
    labels = np.zeros(mask.shape, dtype=np.int64)
    count = 0
    for cls in np.unique(mask[foreground]):
        components, found = ndimage.label(mask == cls)
        labels[components > 0] = components[components > 0] + count
        count += found
    result = np.zeros(mask.shape, dtype=np.float32)
    if count < 2:
        return result
    reach = int(np.ceil(4 * sigma))
    nearest, second = np.full((2, *mask.shape), np.inf, dtype=np.float32)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        rows = slice(max(box[0].start - reach, 0), min(box[0].stop + reach, mask.shape[0]))
        cols = slice(max(box[1].start - reach, 0), min(box[1].stop + reach, mask.shape[1]))
        distance = ndimage.distance_transform_edt(labels[rows, cols] != index).astype(np.float32)
        d1, d2 = nearest[rows, cols], second[rows, cols]
        second[rows, cols] = np.minimum(d2, np.maximum(d1, distance))
        nearest[rows, cols] = np.minimum(d1, distance)
    total = nearest + second
    near = np.isfinite(total) & ~foreground
    result[near] = w0 * np.exp(-(total[near] ** 2) / (2 * sigma**2))
    return result


def balanced_class_weights(counts: np.ndarray, num_classes: int, power: float = 1.0) -> tuple[float, ...]:
    """Inverse-frequency class weights raised to `power`, normalised to mean 1, from the pixel count of each
    mask value (np.bincount of the masks); absent classes get 1. Power 1 is the paper's w_c; below 1 tempers
    them, so the rarest classes are learned without giving up the common ones (training/plan.py chooses it)."""
    counts = np.asarray(counts)[: max(num_classes, 2)].astype(np.float64)
    present = counts > 0
    weights = np.ones_like(counts)
    weights[present] = (counts[present].sum() / (present.sum() * counts[present])) ** power
    return tuple(float(w) for w in weights / weights.mean())
