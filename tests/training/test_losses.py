from __future__ import annotations

import math

import pytest
import torch

from unetkit.config import LossConfig
from unetkit.training.losses import LOSSES, cross_entropy, focal, get_loss, lovasz, soft_dice_loss, tversky

LOGITS = torch.tensor([[[[0.0, 2.0]]]])
TARGET = torch.tensor([[[0, 1]]])
LN2, SOFT2 = math.log(2), math.log(1 + math.exp(-2))


def test_bce_matches_the_formula() -> None:
    assert cross_entropy(LOGITS, TARGET).item() == pytest.approx((LN2 + SOFT2) / 2)


def test_class_weights_and_border_map_weight_each_pixel() -> None:
    weighted = cross_entropy(LOGITS, TARGET, options=LossConfig(class_weights=(1.0, 3.0)))
    assert weighted.item() == pytest.approx((LN2 + 3 * SOFT2) / 4)
    border = cross_entropy(LOGITS, TARGET, weight_map=torch.tensor([[[1.0, 0.0]]]))  # w = 1 + border
    assert border.item() == pytest.approx((2 * LN2 + SOFT2) / 3)


def test_ignore_index_excludes_pixels() -> None:
    loss = cross_entropy(torch.zeros(1, 1, 1, 2), torch.tensor([[[0, 255]]]), ignore_index=255)
    assert loss.item() == pytest.approx(LN2)


def test_focal_by_hand() -> None:
    p = 1 / (1 + math.exp(-2))
    expected = (0.25 * LN2 + (1 - p) ** 2 * SOFT2) / 2
    assert focal(LOGITS, TARGET).item() == pytest.approx(expected, rel=1e-5)


def test_soft_dice_and_tversky_by_hand() -> None:
    half = torch.zeros(1, 1, 1, 2)  # probabilities 0.5, 0.5: TP 0.5, FP 0.5, FN 0.5
    assert soft_dice_loss(half, TARGET).item() == pytest.approx(1 / 3)
    # 1 - (0.5 + 1) / (0.5 + 0.3 * 0.5 + 0.7 * 0.5 + 1) = 0.25
    assert tversky(half, TARGET).item() == pytest.approx(0.25)


def test_lovasz_hinge_by_hand() -> None:
    assert lovasz(torch.tensor([[[[2.0, -1.0]]]]), torch.tensor([[[1, 0]]])).item() == pytest.approx(0.0)
    assert lovasz(torch.zeros(1, 1, 1, 2), torch.tensor([[[1, 0]]])).item() == pytest.approx(1.0)


def test_multiclass_cross_entropy_by_hand() -> None:
    assert cross_entropy(torch.zeros(1, 3, 1, 1), torch.tensor([[[2]]])).item() == pytest.approx(math.log(3))


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("classes", [1, 3])
def test_every_loss_pushes_the_true_class_up(name: str, classes: int) -> None:
    torch.manual_seed(0)
    logits = (0.1 * torch.randn(2, classes, 4, 4)).requires_grad_()  # off the ties Lovász sorts on
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[:, :2] = 1
    loss = get_loss(name)(logits, target, torch.ones(2, 4, 4) if name == "weighted_ce" else None)
    assert loss.item() > 0
    loss.backward()
    grad = logits.grad
    # Descent raises the true class's logits on average, where the truth is 1 and where it is 0.
    if classes == 1:
        assert grad[:, 0, :2].mean() < 0 < grad[:, 0, 2:].mean()
    else:
        assert grad[:, 1, :2].mean() < 0 and grad[:, 0, 2:].mean() < 0


def test_shape_mismatch_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="expected logits"):
        cross_entropy(torch.zeros(1, 1, 2, 2), torch.zeros(1, 3, 3))


def test_lovasz_elu_by_hand() -> None:
    # elu+1 maps the logits (2, -1) to (3, 1/e): errors -2 (foreground) and 1 + 1/e (background), whose
    # Lovász gradient is 0.5 each: the plain hinge's 0 becomes (1 + 1/e) / 2
    logits, target = torch.tensor([[[[2.0, -1.0]]]]), torch.tensor([[[1, 0]]])
    assert get_loss("lovasz_elu")(logits, target).item() == pytest.approx((1 + math.exp(-1)) / 2)
    assert lovasz(logits, target).item() == pytest.approx(0.0)


def test_lovasz_elu_is_lovasz_softmax_for_several_classes() -> None:
    torch.manual_seed(1)
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    assert get_loss("lovasz_elu")(logits, target).item() == pytest.approx(lovasz(logits, target).item())
