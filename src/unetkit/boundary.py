"""Boundary metrics of one binary mask pair: HD95, ASSD and normalised surface Dice (NSD), with MONAI's
definitions (`use_subvoxels=False`) and the Metrics Reloaded empty cases (one mask empty: the image's
diagonal, which keeps means and intervals finite where MONAI returns inf or NaN); both in docs/metrics.md.

Written on `scipy.ndimage` (an exact Euclidean distance transform) rather than importing MONAI, medpy or
surface-distance: each pulls a second array stack (MONAI its own torch requirements, medpy a compiled
extension; surface-distance is not on PyPI), for about forty lines of code. benchmarks/boundary_agreement.py
checks the figures against MONAI's to 1e-6 and times both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def boundary(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) bool: the pixels one 4-neighbour erosion (scipy's default) removes; the border is outside."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def boundary_figures(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] = (1.0, 1.0),
                     tolerances: Sequence[float] = ()) -> dict[str, float]:
    """{"hd95", "assd", "nsd@TAU" for each tolerance} of two (H, W) masks, from one pair of distance
    transforms. Both masks are cropped to the box around their union first: every boundary pixel lies
    inside it, and so does the nearest boundary pixel of the other mask, so the distances are exact."""
    pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape or pred.ndim != 2:
        raise ValueError(f"expected two (H, W) masks of one shape, got {pred.shape} and {truth.shape}")
    if not pred.any() or not truth.any():
        both_empty = not pred.any() and not truth.any()  # Metrics Reloaded: best if both are, worst (the diagonal) if one is
        worst = 0.0 if both_empty else math.hypot(*((n - 1) * s for n, s in zip(pred.shape, spacing)))
        return {"hd95": worst, "assd": worst} | {f"nsd@{tau:g}": float(both_empty) for tau in tolerances}
    rows, cols = np.nonzero(pred | truth)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    # Erosion is taken on the whole image (a mask touching the border has a boundary there), then cropped.
    pred_edge, truth_edge = boundary(pred)[box], boundary(truth)[box]
    to_truth = ndimage.distance_transform_edt(~truth_edge, sampling=tuple(spacing))[pred_edge].astype(np.float64)
    to_pred = ndimage.distance_transform_edt(~pred_edge, sampling=tuple(spacing))[truth_edge].astype(np.float64)
    both = np.concatenate([to_truth, to_pred])
    out = {"hd95": float(max(np.percentile(to_truth, 95), np.percentile(to_pred, 95))), "assd": float(both.mean())}
    return out | {f"nsd@{tau:g}": float((both <= tau).sum()) / len(both) for tau in tolerances}
