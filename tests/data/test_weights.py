from __future__ import annotations

import math

import numpy as np
import pytest

from unetkit.data.weights import balanced_class_weights, border_weights


def two_squares() -> np.ndarray:
    mask = np.zeros((9, 12), np.uint8)
    mask[3:6, 1:4] = 1  # object A, columns 1..3
    mask[3:6, 6:9] = 1  # object B, columns 6..8; gap in columns 4 and 5
    return mask


def test_border_term_between_two_objects_by_hand() -> None:
    weights = border_weights(two_squares(), w0=10.0, sigma=5.0)
    # (4, 4): 1 px from A, 2 px from B -> 10 exp(-(1 + 2)^2 / 50)
    assert weights[4, 4] == pytest.approx(10 * math.exp(-9 / 50), rel=1e-5)
    assert weights[4, 5] == pytest.approx(10 * math.exp(-9 / 50), rel=1e-5)
    # (0, 11): sqrt(9 + 9) from B, sqrt(9 + 64) from A
    far = math.sqrt(18) + math.sqrt(73)
    assert weights[0, 11] == pytest.approx(10 * math.exp(-far**2 / 50), rel=1e-4)
    assert weights[two_squares() > 0].max() == 0.0  # objects themselves get no border term


def test_single_object_has_no_border_term() -> None:
    mask = np.zeros((10, 10), np.uint8)
    mask[2:5, 2:5] = 1
    assert border_weights(mask).max() == 0.0


def test_balanced_class_weights_are_inverse_frequency_with_mean_one() -> None:
    masks = np.zeros((1, 4, 4), np.uint8)
    masks[0, 0, :1] = 1  # 1 foreground pixel of 16
    weights = balanced_class_weights(np.bincount(masks.reshape(-1)), 1)
    assert weights[1] / weights[0] == pytest.approx(15.0)
    assert sum(weights) / 2 == pytest.approx(1.0)
    tempered = balanced_class_weights(np.bincount(masks.reshape(-1)), 1, power=0.75)
    assert tempered[1] / tempered[0] == pytest.approx(15.0**0.75)  # 7.62: the ratio tempered, the mean still 1
    assert sum(tempered) / 2 == pytest.approx(1.0)


def test_ignored_pixels_and_other_classes_are_not_one_object() -> None:
    mask = two_squares()
    mask[3:6, 6:9] = 2  # the second square is another class: still two objects
    assert border_weights(mask)[4, 4] == pytest.approx(10 * math.exp(-9 / 50), rel=1e-5)
    mask[3:6, 6:9] = 255  # ignored: only one object is left, so no border term
    assert border_weights(mask, ignore_index=255).max() == 0.0
