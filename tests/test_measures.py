"""The metric registry: names, per-class and pooled figures, regions, AUC and bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.errors import UserError
from unetkit.measures import MeasureSet, parse_measures
from unetkit.metrics import MetricAccumulator


def test_names_are_parsed_checked_and_normalised() -> None:
    assert parse_measures("iou, dice,hd95,nsd@2.0,nsd@2") == ("iou", "dice", "hd95", "nsd@2")
    with pytest.raises(UserError, match="unknown metric 'hd99'"):
        parse_measures("iou,hd99")
    with pytest.raises(UserError, match="unknown metric 'nsd@TOL'"):
        parse_measures("nsd@TOL")


def _pairs(n: int = 6, size: int = 32, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Squares of random side, and their predictions shifted by 0..4 pixels and grown by 0..2."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        side, shift, grow = rng.integers(6, 16), rng.integers(0, 5), rng.integers(0, 3)
        truth, pred = np.zeros((size, size), np.uint8), np.zeros((size, size), np.uint8)
        truth[4 : 4 + side, 4 : 4 + side] = 1
        pred[4 : 4 + side + grow, 4 + shift : 4 + side + shift] = 1
        out.append((pred, truth))
    return out


def test_pooled_iou_and_dice_equal_the_metric_accumulator() -> None:
    measures, accumulator = MeasureSet(("iou", "dice", "tgs_map")), MetricAccumulator()
    for pred, truth in _pairs():
        measures.add(pred, truth)
        accumulator.update(torch.from_numpy(pred)[None], torch.from_numpy(truth)[None])
    summary, reference = measures.summary(), accumulator.summary()
    for name in ("iou", "dice", "tgs_map"):
        assert summary[name] == pytest.approx(reference[name], abs=1e-12)


def test_multiclass_per_class_figures_and_boundary_on_foreground_classes() -> None:
    truth = np.zeros((20, 20), np.uint8)
    truth[2:8, 2:8], truth[10:18, 10:18] = 1, 2
    pred = truth.copy()
    pred[10:18, 10:18] = 0  # class 2 missed entirely
    measures = MeasureSet(("iou", "hd95"), num_classes=3)
    measures.add(pred, truth)
    summary = measures.summary()
    assert summary["iou_per_class"][1:] == [1.0, 0.0]  # class 1 perfect, class 2 missed
    assert summary["hd95_per_class"] == [0.0, pytest.approx(np.hypot(19, 19))]  # classes 1 and 2 only
    assert summary["hd95"] == pytest.approx(np.hypot(19, 19) / 2)


def test_pixels_under_ignore_index_count_in_no_class() -> None:
    truth = np.zeros((10, 10), np.uint8)
    truth[:, 5:] = 1
    truth[:, 8:] = 255  # ignored: predicted as class 2 there, which would cost both classes
    pred = truth.copy()
    pred[:, 8:] = 2
    measures = MeasureSet(("iou", "dice", "hd95"), num_classes=3, ignore_index=255)
    measures.add(pred, truth)
    summary = measures.summary()
    assert summary["iou_per_class"] == [1.0, 1.0, 1.0]  # class 2 absent from both inside: counted as 1, not scored
    assert summary["iou"] == 1.0 and summary["dice"] == 1.0 and summary["hd95"] == 0.0


def test_pixels_outside_the_region_count_nowhere() -> None:
    truth = np.zeros((20, 20), np.uint8)
    truth[5:15, 5:15] = 1
    region = np.zeros((20, 20), bool)
    region[2:18, 2:18] = True
    wrong_outside = truth.copy()
    wrong_outside[~region] = 1  # every pixel outside the region predicted wrongly
    names = ("iou", "dice", "hd95", "assd", "nsd@1", "auc")
    clean, dirty = MeasureSet(names), MeasureSet(names)
    clean.add(truth, truth, truth[None].astype(np.float32), region)
    dirty.add(wrong_outside, truth, wrong_outside[None].astype(np.float32), region)
    assert dirty.summary() == clean.summary() == {"iou": 1.0, "dice": 1.0, "hd95": 0.0, "assd": 0.0, "nsd@1": 1.0,
                                                  "auc": 1.0}


def test_auc_of_pooled_pixels_counts_ties_half() -> None:
    measures = MeasureSet(("auc",))
    truth = np.array([[0, 0, 1, 1]], np.uint8)
    measures.add(truth, truth, np.array([[[0.1, 0.6, 0.6, 0.9]]], np.float32))
    # 4 positive-negative pairs: 3 ordered right, 1 tied -> (3 + 0.5) / 4
    assert measures.summary()["auc"] == pytest.approx(0.875)


def test_a_fixed_seed_gives_the_same_interval_and_identical_images_a_zero_width_one() -> None:
    names = ("iou", "dice", "hd95", "nsd@1")
    varied = MeasureSet(names)
    for pred, truth in _pairs(n=12):
        varied.add(pred, truth)
    first, second = varied.intervals(seed=3), varied.intervals(seed=3)
    assert first == second
    assert all(low < high for low, high in first.values())
    same = MeasureSet(names)
    pred, truth = _pairs(n=1)[0]
    for _ in range(20):
        same.add(pred, truth)
    summary = same.summary()
    for name, (low, high) in same.intervals().items():
        assert low == pytest.approx(summary[name], abs=1e-12) and high == pytest.approx(summary[name], abs=1e-12)
