"""The training objective: the seed's path unchanged, deep supervision, the image head, the second stage."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from unetkit.config import LossConfig, TrainConfig
from unetkit.models.encoder_unet import SegmentationOutputs
from unetkit.training import parts
from unetkit.training.checkpoint import TrainState
from unetkit.training.losses import cross_entropy, get_loss
from unetkit.training.step import enter_stage, presence, stage_peak, training_loss

LN2 = math.log(2)


def test_presence_is_any_foreground_per_image_and_class() -> None:
    masks = torch.tensor([[[0, 1], [0, 0]], [[0, 0], [0, 0]], [[2, 0], [0, 0]]])
    assert presence(masks, 1, None).tolist() == [[1.0], [0.0], [1.0]]
    assert presence(masks, 3, None).tolist() == [[1, 1, 0], [1, 0, 0], [1, 0, 1]]
    assert presence(torch.tensor([[[255, 0]]]), 1, ignore_index=255).tolist() == [[0.0]]  # ignored is not foreground
    labels = torch.zeros(2, 2, 3, 3)
    labels[1, 1, 0, 0] = 1
    assert presence(labels, 2, None).tolist() == [[0, 0], [0, 1]]


def test_a_plain_net_gets_exactly_the_seed_loss() -> None:
    torch.manual_seed(0)
    logits, masks = torch.randn(2, 1, 5, 5), torch.randint(0, 2, (2, 5, 5))
    assert torch.equal(training_loss(logits, masks, None, cross_entropy, LossConfig()), cross_entropy(logits, masks))


def outputs_and_masks() -> tuple[SegmentationOutputs, torch.Tensor]:
    """Image 0 all foreground, image 1 empty; every logit 0 (BCE ln 2) except the aux map of the empty image (5)."""
    masks = torch.stack([torch.ones(2, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long)])
    aux = torch.zeros(2, 1, 2, 2)
    aux[1] = 5.0
    return SegmentationOutputs(torch.zeros(2, 1, 2, 2), [aux], torch.zeros(2, 1)), masks


def test_deep_supervision_and_image_head_terms_by_hand() -> None:
    outputs, masks = outputs_and_masks()
    # main ln2 + 0.1 * aux on the non-empty image (ln2) + 0.1 * image BCE (ln2) = 1.2 ln2
    loss = training_loss(outputs, masks, None, cross_entropy, LossConfig(aux_weight=0.1, image_weight=0.1))
    assert loss.item() == pytest.approx(1.2 * LN2)
    # with the empty image in the aux term: its pixels cost softplus(5) each, the mean over both images
    everything = training_loss(outputs, masks, None, cross_entropy,
                               LossConfig(aux_weight=0.1, image_weight=0.0, aux_nonempty_only=False))
    assert everything.item() == pytest.approx(LN2 + 0.1 * (LN2 + math.log1p(math.exp(5))) / 2)


def test_an_all_empty_batch_keeps_the_aux_heads_in_the_graph_at_zero() -> None:
    outputs, masks = outputs_and_masks()
    aux = outputs.aux_logits[0].clone().requires_grad_()
    outputs = outputs._replace(aux_logits=[aux])
    loss = training_loss(outputs, torch.zeros_like(masks), None, cross_entropy, LossConfig(image_weight=0.0))
    loss.backward()
    assert loss.item() == pytest.approx(LN2) and aux.grad is not None and float(aux.grad.abs().sum()) == 0.0


def fake_parts(schedule_active: bool) -> SimpleNamespace:
    config = TrainConfig(loss=LossConfig(name="bce", second_name="lovasz_elu", second_at=0.6, second_lr=5e-4))
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-2)
    return SimpleNamespace(config=config, stage=1, optimizer=optimizer, schedule=SimpleNamespace(active=schedule_active))


def test_the_second_stage_starts_at_its_share_and_stays() -> None:
    parts, state = fake_parts(schedule_active=False), TrainState()
    enter_stage(parts, state, 0.59)
    assert parts.stage == state.stage == 1 and stage_peak(parts) is None
    enter_stage(parts, state, 0.6)
    assert parts.stage == state.stage == 2 and stage_peak(parts) == 5e-4
    assert parts.optimizer.param_groups[0]["lr"] == 5e-4  # plateau: the second stage's lr is set once
    enter_stage(parts, state, 0.1)  # a resumed run with more epochs: progress went back, the stage does not
    assert parts.stage == 2


def test_a_resumed_state_in_stage_two_starts_there() -> None:
    parts = fake_parts(schedule_active=True)
    enter_stage(parts, TrainState(stage=2), 0.0)
    assert parts.stage == 2 and parts.optimizer.param_groups[0]["lr"] == 1e-2  # a schedule sets lr per step


def test_the_second_loss_is_checked_by_name() -> None:
    from unetkit.errors import UserError

    with pytest.raises(UserError, match="'loss.second_name': 'nope'"):
        get_loss("nope", "loss.second_name")


@pytest.mark.parametrize(("mode", "native", "dtype"), [("auto", True, torch.bfloat16), ("auto", False, None),
                                                       ("bf16", False, torch.bfloat16), ("off", True, None)])
def test_cpu_autocast_is_bf16_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch, mode: str, native: bool,
                                                   dtype: torch.dtype | None) -> None:
    monkeypatch.setattr(parts, "has_bf16", lambda device: native)
    assert parts._amp_dtype(mode, torch.device("cpu")) == dtype


def test_fp16_on_the_cpu_means_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parts, "has_bf16", lambda device: True)
    assert parts._amp_dtype("fp16", torch.device("cpu")) == torch.bfloat16
