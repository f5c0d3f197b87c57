"""Train/validation split, reproducible by seed and stratified by mask coverage.

Hand-written rather than scikit-learn's `train_test_split(stratify=...)`: that one
refuses strata with a single member, which real data has (a coverage bin seen once),
and would bring scikit-learn and SciPy into every install for twenty lines.
"""

from __future__ import annotations

import numpy as np

from unetkit.errors import UserError


def coverage_classes(coverage: np.ndarray, bins: int = 10) -> np.ndarray:
    """Stratum per image as in the TGS kernel: ceil(coverage * bins), so 0 = empty mask."""
    return np.ceil(np.asarray(coverage, dtype=np.float64) * bins).astype(np.int64)


def stratified_split(strata: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices 0..N-1 into (train, val), each stratum in proportion: round(N * val_fraction) validation
    images (at least 1, leaving at least one for training), quotas by largest remainder, so rare strata are
    represented whenever the numbers allow."""
    strata = np.asarray(strata)
    n = len(strata)
    if n < 2:
        raise UserError(f"need at least 2 images to split into training and validation, found {n}")
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    rng = np.random.default_rng(seed)
    labels, counts = np.unique(strata, return_counts=True)
    exact = counts * n_val / n
    quota = np.floor(exact).astype(np.int64)
    remainder_order = np.argsort(-(exact - quota), kind="stable")
    quota[remainder_order[: n_val - quota.sum()]] += 1
    val = np.sort(np.concatenate([rng.permutation(np.flatnonzero(strata == label))[:take]
                                  for label, take in zip(labels, quota)]))
    return np.setdiff1d(np.arange(n), val), val


def stratified_folds(strata: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """K disjoint folds covering 0..N-1 (sorted index arrays): strata shuffled, concatenated and dealt
    round-robin, so fold sizes differ by at most one and a stratum of at least K members is in every fold."""
    strata = np.asarray(strata)
    if not 2 <= k <= len(strata):
        raise UserError(f"folds: need 2 <= K <= number of images ({len(strata)}), got {k}")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(strata == label)) for label in np.unique(strata)])
    return [np.sort(order[i::k]) for i in range(k)]
