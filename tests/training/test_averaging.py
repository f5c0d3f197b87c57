from __future__ import annotations

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from unetkit.training.averaging import EMA_RUN_SHARE, ema_floor, warm_ema


def _averaged_over(values: list[float], update: object) -> float:
    """The average of a one-weight model whose weight takes `values` in turn."""
    net = torch.nn.Linear(1, 1, bias=False)
    average = AveragedModel(net, multi_avg_fn=update, use_buffers=True)
    for value in values:
        net.weight.data.fill_(value)
        average.update_parameters(net)
    return float(average.module.weight.detach())


def test_warm_ema_is_the_plain_mean_until_its_horizon() -> None:
    steps = [float(k) for k in range(1, 201)]  # 200 steps, shorter than the 500 of decay 0.998
    assert _averaged_over(steps, warm_ema(0.998)) == pytest.approx(100.5, rel=1e-5)
    # torch's EMA keeps 0.998**199 = 0.67 of the first weight (1.0): the average stays near the start
    assert _averaged_over(steps, get_ema_multi_avg_fn(0.998)) == pytest.approx(36.0, abs=0.1)


def test_warm_ema_decays_at_its_rate_past_the_horizon() -> None:
    # decay 0.5: mean of the first two (1.5), then 0.5 * 1.5 + 0.5 * 3 and 0.5 * 2.25 + 0.5 * 4
    assert _averaged_over([1.0, 2.0, 3.0, 4.0], warm_ema(0.5)) == pytest.approx(3.125)


def test_warm_ema_averages_batch_norm_buffers_including_the_integer_counter() -> None:
    net = torch.nn.BatchNorm2d(2)
    average = AveragedModel(net, multi_avg_fn=warm_ema(0.9), use_buffers=True)
    for mean in (0.0, 2.0):
        net.running_mean.fill_(mean)
        net.num_batches_tracked.fill_(int(mean) * 10)
        average.update_parameters(net)
    assert torch.allclose(average.module.running_mean, torch.ones(2))
    assert int(average.module.num_batches_tracked) == 10


def test_the_horizon_is_at_most_a_share_of_the_runs_steps() -> None:
    """100 steps done at 25% of the run: 400 steps in all, so a horizon of at most 0.2 * 400 = 80 steps."""
    assert EMA_RUN_SHARE == 0.2
    assert ema_floor(100, 0.25) == pytest.approx(1 / 80)
    assert ema_floor(0, 0.0) == 0.0 and ema_floor(3, 0.9) == 1.0  # nothing known yet; a run of ~3 steps


def test_a_floor_makes_the_average_follow_the_last_weights() -> None:
    """Decay 0.998 over 200 steps is their plain mean (100.5); with a floor of 0.5 (a horizon of 2 steps)
    the average is 0.5 * 200 + 0.25 * 199 + ...: 199.0 to 1e-5."""
    steps = [float(k) for k in range(1, 201)]
    assert _averaged_over(steps, warm_ema(0.998, torch.tensor(0.5))) == pytest.approx(199.0, rel=1e-5)
