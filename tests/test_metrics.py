from __future__ import annotations

import pytest
import torch

from unetkit.metrics import MetricAccumulator, class_counts, dice, iou, tgs_score


def masks(*rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.uint8)


EMPTY = [[0, 0], [0, 0]]
FULL = [[1, 1], [1, 1]]
HALF = [[1, 1], [0, 0]]
QUARTER = [[1, 0], [0, 0]]


def test_empty_truth_and_empty_prediction_score_one() -> None:
    assert iou(masks(EMPTY), masks(EMPTY)).item() == 1.0
    assert dice(masks(EMPTY), masks(EMPTY)).item() == 1.0
    assert tgs_score(masks(EMPTY), masks(EMPTY)).item() == 1.0


def test_empty_truth_with_a_prediction_scores_zero() -> None:
    assert iou(masks(QUARTER), masks(EMPTY)).item() == 0.0
    assert tgs_score(masks(QUARTER), masks(EMPTY)).item() == 0.0


def test_missed_object_scores_zero() -> None:
    assert iou(masks(EMPTY), masks(HALF)).item() == 0.0
    assert dice(masks(EMPTY), masks(HALF)).item() == 0.0


def test_partial_overlap_by_hand() -> None:
    # prediction HALF (2 px) vs truth QUARTER (1 px): TP 1, FP 1, FN 0 -> IoU 1/2, Dice 2/3.
    assert iou(masks(HALF), masks(QUARTER)).item() == pytest.approx(0.5)
    assert dice(masks(HALF), masks(QUARTER)).item() == pytest.approx(2 / 3)
    # IoU 0.5 is not > 0.5, so no threshold is hit.
    assert tgs_score(masks(HALF), masks(QUARTER)).item() == 0.0


def test_tgs_score_counts_thresholds_strictly_above() -> None:
    truth = torch.zeros(1, 10, 10, dtype=torch.uint8)
    truth[0, :, :8] = 1  # 80 px
    pred = torch.zeros_like(truth)
    pred[0, :, :6] = 1  # 60 px inside: IoU 0.75 -> hits 0.50..0.70 = 5 of 10
    assert iou(pred, truth).item() == pytest.approx(0.75)
    assert tgs_score(pred, truth).item() == pytest.approx(0.5)


def test_accumulator_pools_pixels_and_averages_images() -> None:
    acc = MetricAccumulator(num_classes=1)
    acc.update(masks(HALF, EMPTY), masks(QUARTER, EMPTY))  # pooled: TP 1, FP 1, FN 0
    summary = acc.summary()
    assert summary["iou"] == pytest.approx(0.5)
    assert summary["dice"] == pytest.approx(2 / 3)
    assert summary["pixel_accuracy"] == pytest.approx(7 / 8)
    assert summary["tgs_map"] == pytest.approx(0.5)  # image scores 0 and 1
    assert summary["n_images"] == 2


def test_multiclass_counts_and_mean_iou() -> None:
    truth = masks([[0, 1], [2, 2]])
    pred = masks([[0, 1], [1, 2]])
    counts = class_counts(pred, truth, 3)
    assert counts.tolist() == [[1, 0, 0, 3], [1, 1, 0, 2], [1, 0, 1, 2]]
    acc = MetricAccumulator(num_classes=3)
    acc.update(pred, truth)
    assert acc.summary()["iou"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert acc.summary()["pixel_accuracy"] == pytest.approx(3 / 4)


def test_shape_mismatch_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="differs"):
        iou(masks(HALF), torch.zeros(1, 3, 3, dtype=torch.uint8))


def test_ignored_pixels_count_nowhere() -> None:
    truth = masks([[1, 255], [0, 0]])
    pred = masks([[1, 1], [0, 0]])  # foreground predicted on the ignored pixel
    acc = MetricAccumulator(num_classes=1, ignore_index=255)
    acc.update(pred, truth)
    assert acc.image_iou == [1.0]
    assert acc.summary()["iou"] == 1.0 and acc.summary()["pixel_accuracy"] == 1.0
