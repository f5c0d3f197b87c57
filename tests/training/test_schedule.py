from __future__ import annotations

import math

import pytest
import torch

from unetkit.config import OptimConfig, ScheduleConfig, TrainConfig
from unetkit.training.schedule import StepSchedule, lr_at


def test_cosine_runs_from_lr_to_min_lr_after_warmup() -> None:
    config = TrainConfig(schedule=ScheduleConfig(name="cosine", min_lr=1e-5, warmup_epochs=1), optim=OptimConfig(lr=1e-2),
                         epochs=10)
    assert lr_at(0.05, config, warmup=0.1) == pytest.approx(5e-3)
    assert lr_at(0.1, config, warmup=0.1) == pytest.approx(1e-2)
    assert lr_at(0.55, config, warmup=0.1) == pytest.approx(1e-5 + (1e-2 - 1e-5) * 0.5)
    assert lr_at(1.0, config, warmup=0.1) == pytest.approx(1e-5)


def test_poly_and_onecycle_shapes() -> None:
    poly = TrainConfig(schedule=ScheduleConfig(name="poly"), optim=OptimConfig(lr=1.0))
    assert lr_at(0.5, poly, 0.0) == pytest.approx(0.5**0.9)
    cycle = TrainConfig(schedule=ScheduleConfig(name="onecycle"), optim=OptimConfig(lr=1.0))
    assert lr_at(0.0, cycle, 0.0) == pytest.approx(1 / 25)
    assert lr_at(0.3, cycle, 0.0) == pytest.approx(1.0)
    assert lr_at(1.0, cycle, 0.0) == pytest.approx(1e-4)


def test_time_budget_lays_out_the_schedule() -> None:
    config = TrainConfig(schedule=ScheduleConfig(name="cosine"), epochs=1000, time_budget_min=10)
    schedule = StepSchedule(config, steps_per_epoch=10)
    assert schedule.progress(steps_done=10, elapsed_s=300) == pytest.approx(0.5)  # half the budget spent
    assert StepSchedule(TrainConfig(epochs=4), 10).progress(20, 1e6) == pytest.approx(0.5)  # no budget: steps


def test_a_run_as_long_as_its_budget_warms_up_over_steps_then_follows_the_budget() -> None:
    config = TrainConfig(schedule=ScheduleConfig(name="cosine", min_lr=0.0, warmup_epochs=0.5),
                         optim=OptimConfig(lr=1.0), epochs=None, time_budget_min=10)
    schedule = StepSchedule(config, steps_per_epoch=40)  # warm-up: the first 20 steps
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    schedule.apply(optimizer, steps_done=10, elapsed_s=6)  # half the warm-up, 1% of the budget
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 0.01)))
    schedule.apply(optimizer, steps_done=10_000, elapsed_s=300)  # no epoch count: half the budget is half the run
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)


def test_sgdr_restarts_every_cycle_and_counts_them() -> None:
    config = TrainConfig(schedule=ScheduleConfig(name="sgdr", cycles=4, min_lr=0.0), optim=OptimConfig(lr=1.0), epochs=8)
    assert lr_at(0.0, config, 0.0) == pytest.approx(1.0)
    assert lr_at(0.125, config, 0.0) == pytest.approx(0.5)  # half-way through the first cycle
    assert lr_at(0.2499, config, 0.0) == pytest.approx(0.0, abs=1e-6)
    assert lr_at(0.25, config, 0.0) == pytest.approx(1.0)  # warm restart
    assert lr_at(1.0, config, 0.0) == pytest.approx(0.0)  # the last cycle ends at its floor
    schedule = StepSchedule(config, steps_per_epoch=10)
    assert [schedule.cycles_done(p) for p in (0.0, 0.26, 0.5, 0.99, 1.0)] == [0, 1, 2, 3, 4]


def test_a_second_stage_peak_replaces_the_lr() -> None:
    config = TrainConfig(schedule=ScheduleConfig(name="cosine", min_lr=0.0), optim=OptimConfig(lr=1.0))
    assert lr_at(0.5, config, 0.0, peak=4e-4) == pytest.approx(2e-4)


def test_snapshots_need_sgdr() -> None:
    from unetkit.errors import UserError
    from unetkit.training.schedule import check_names

    with pytest.raises(UserError, match="schedule.snapshots': needs schedule.name sgdr"):
        check_names(TrainConfig(schedule=ScheduleConfig(name="cosine", snapshots=True)))
