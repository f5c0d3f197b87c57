"""Agreement and speed of unetkit's boundary metrics (unetkit/boundary.py) against MONAI's.

MONAI is not a dependency of unetkit; install it beside the project for this script only:
    pip install --no-deps --target /tmp/monai monai==1.6.1
    PYTHONPATH=src:/tmp/monai python benchmarks/boundary_agreement.py [--pairs 200] [--size 256]
Prints, over random blob pairs (both masks non-empty, where MONAI's figures are finite), the largest
difference of HD95, ASSD and NSD@2 to MONAI's definitions computed in float64, and to MONAI's public
functions (which cast to float32, so they agree to float32 precision only), and the time per pair.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy import ndimage

from unetkit.boundary import boundary_figures


def _blobs(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random mask of a few smooth blobs, some touching the image border."""
    noise = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma=size / 16)
    return noise > np.quantile(noise, rng.uniform(0.6, 0.95))


def _monai(pred: np.ndarray, truth: np.ndarray, tolerance: float) -> dict[str, float]:
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    def one_hot(mask: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([~mask, mask])[None].astype(np.float64))

    p, t = one_hot(pred), one_hot(truth)
    return {"hd95": float(compute_hausdorff_distance(p, t, percentile=95)),
            "assd": float(compute_average_surface_distance(p, t, symmetric=True)),
            f"nsd@{tolerance:g}": float(compute_surface_dice(p, t, class_thresholds=[tolerance]))}


def _monai_float64(pred: np.ndarray, truth: np.ndarray, tolerance: float) -> dict[str, float]:
    """MONAI's definitions in float64: its edges (get_mask_edges) and its CPU distance (a KD-tree
    over the edge pixels), reduced with NumPy. MONAI's public functions cast to float32 first."""
    from monai.metrics.utils import get_mask_edges
    from scipy.spatial import KDTree

    edges_pred, edges_truth = (np.asarray(e, bool) for e in get_mask_edges(pred, truth, crop=False))
    p, t = np.argwhere(edges_pred).astype(np.float64), np.argwhere(edges_truth).astype(np.float64)
    to_truth, to_pred = KDTree(t).query(p, k=1)[0], KDTree(p).query(t, k=1)[0]
    both = np.concatenate([to_truth, to_pred])
    return {"hd95": float(max(np.percentile(to_truth, 95), np.percentile(to_pred, 95))), "assd": float(both.mean()),
            f"nsd@{tolerance:g}": float((both <= tolerance).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--tolerance", type=float, default=2.0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    pairs = [(_blobs(rng, args.size), _blobs(rng, args.size)) for _ in range(args.pairs)]
    worst: dict[str, float] = {}
    worst64: dict[str, float] = {}
    ours_s = theirs_s = 0.0
    for pred, truth in pairs:
        started = time.perf_counter()
        ours = boundary_figures(pred, truth, tolerances=(args.tolerance,))
        ours_s += time.perf_counter() - started
        started = time.perf_counter()
        theirs = _monai(pred, truth, args.tolerance)
        theirs_s += time.perf_counter() - started
        for name, value in theirs.items():
            worst[name] = max(worst.get(name, 0.0), abs(ours[name] - value) / max(abs(value), 1.0))
        for name, value in _monai_float64(pred, truth, args.tolerance).items():
            worst64[name] = max(worst64.get(name, 0.0), abs(ours[name] - value))
    print(f"{args.pairs} pairs of {args.size}x{args.size} blobs")
    print("largest |unetkit - MONAI float64 (its edges, its KD-tree distances)|: "
          + ", ".join(f"{name} {diff:.2e}" for name, diff in worst64.items()))
    print("largest relative difference to MONAI's public functions (float32 inside): "
          + ", ".join(f"{name} {diff:.2e}" for name, diff in worst.items()))
    print(f"time per pair (all three figures): unetkit {1000 * ours_s / args.pairs:.2f} ms, "
          f"MONAI {1000 * theirs_s / args.pairs:.2f} ms")


if __name__ == "__main__":
    main()
