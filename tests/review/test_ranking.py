"""The doubt score and the review order (review/ranking.py)."""

from __future__ import annotations

import numpy as np

from unetkit.review.ranking import doubt_score, mask_iou, review_order


def test_binary_doubt_is_the_share_of_probabilities_between_0_2_and_0_8() -> None:
    probabilities = np.array([0.0, 0.1, 0.19, 0.21, 0.5, 0.79, 0.81, 1.0], np.float32).reshape(1, 2, 4)
    assert doubt_score(probabilities) == 3 / 8  # 0.21, 0.5 and 0.79


def test_class_doubt_is_the_share_of_pixels_whose_top_two_lie_within_0_6() -> None:
    confident = [0.9, 0.05, 0.05]  # margin 0.85
    torn = [0.45, 0.40, 0.15]  # margin 0.05
    edge = [0.7, 0.2, 0.1]  # margin 0.5
    probabilities = np.array([confident, torn, edge, confident], np.float32).T.reshape(3, 2, 2)
    assert doubt_score(probabilities) == 2 / 4


def test_iou_of_masks_and_the_order() -> None:
    predicted = np.array([[1, 1, 0, 0]], np.uint8)
    truth = np.array([[1, 0, 0, 0]], np.uint8)
    assert mask_iou(predicted, truth, 1) == 0.5
    assert mask_iou(np.zeros_like(truth), np.zeros_like(truth), 1) == 1.0
    assert mask_iou(np.array([[1, 2, 2]], np.uint8), np.array([[1, 2, 0]], np.uint8), 3) == (1.0 + 0.5) / 2
    assert review_order({"b": 0.2, "a": 0.2, "c": 0.9}) == ["c", "a", "b"]
