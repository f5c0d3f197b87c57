from __future__ import annotations

import math

import pytest
import torch

from unetkit.training.losses import bce_dice, cross_entropy, soft_dice_loss


def test_bce_matches_the_formula() -> None:
    logits = torch.tensor([[[[0.0, 2.0]]]])
    target = torch.tensor([[[0, 1]]])
    expected = (math.log(2) + math.log(1 + math.exp(-2))) / 2
    assert cross_entropy(logits, target).item() == pytest.approx(expected)


def test_soft_dice_by_hand() -> None:
    logits = torch.tensor([[[[0.0, 0.0]]]])  # probabilities 0.5, 0.5
    target = torch.tensor([[[0, 1]]])
    # 1 - (2*0.5 + 1) / (1.0 + 1 + 1) = 1/3
    assert soft_dice_loss(logits, target).item() == pytest.approx(1 / 3)
    assert bce_dice(logits, target).item() == pytest.approx(math.log(2) + 1 / 3)


def test_multiclass_cross_entropy_and_gradient_sign() -> None:
    logits = torch.zeros(1, 3, 1, 1, requires_grad=True)
    target = torch.tensor([[[2]]])
    loss = cross_entropy(logits, target)
    assert loss.item() == pytest.approx(math.log(3))
    loss.backward()
    assert logits.grad[0, 2, 0, 0] < 0 < logits.grad[0, 0, 0, 0]  # raise the true class


def test_shape_mismatch_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="expected logits"):
        cross_entropy(torch.zeros(1, 1, 2, 2), torch.zeros(1, 3, 3))
