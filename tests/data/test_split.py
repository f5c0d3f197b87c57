from __future__ import annotations

import numpy as np

from unetkit.data.split import coverage_classes, stratified_split


def test_coverage_classes_follow_the_kernel() -> None:
    assert coverage_classes(np.array([0.0, 0.01, 0.1, 0.11, 1.0])).tolist() == [0, 1, 1, 2, 10]


def test_split_is_disjoint_complete_sized_and_reproducible() -> None:
    strata = np.repeat(np.arange(5), [40, 30, 20, 9, 1])
    train, val = stratified_split(strata, 0.2, seed=7)
    assert len(val) == 20 and len(train) == 80
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(100))
    again_train, again_val = stratified_split(strata, 0.2, seed=7)
    assert again_val.tolist() == val.tolist()
    assert stratified_split(strata, 0.2, seed=8)[1].tolist() != val.tolist()


def test_each_stratum_keeps_its_share() -> None:
    strata = np.repeat(np.arange(4), [50, 30, 15, 5])
    _, val = stratified_split(strata, 0.2, seed=0)
    assert np.bincount(strata[val]).tolist() == [10, 6, 3, 1]


def test_two_images_split_one_and_one() -> None:
    train, val = stratified_split(np.array([0, 0]), 0.2, seed=0)
    assert len(train) == 1 and len(val) == 1


def test_folds_partition_the_data_and_keep_strata_balanced() -> None:
    from unetkit.data.split import stratified_folds

    strata = np.repeat(np.arange(4), [50, 30, 15, 6])
    folds = stratified_folds(strata, 5, seed=1)
    together = np.concatenate(folds)
    assert len(together) == 101 and len(set(together.tolist())) == 101  # disjoint and complete
    assert sorted(len(f) for f in folds) == [20, 20, 20, 20, 21]
    for fold in folds:
        assert np.bincount(strata[fold], minlength=4)[0] == 10  # 50 of stratum 0 spread 10 per fold
        assert np.bincount(strata[fold], minlength=4)[3] >= 1
