"""A run that ends useless says so: finish.py's run_warnings, and a real run that cannot learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import unetkit
from unetkit.config import LossConfig, TrainConfig
from unetkit.data.io import write_png
from unetkit.training.finish import run_warnings
from unetkit.training.threshold import THRESHOLDS


def _history(*ious: float) -> list[dict[str, float]]:
    return [{"epoch": i + 1, "val_iou": iou} for i, iou in enumerate(ious)]


def test_no_foreground_in_any_epoch_is_one_warning_naming_the_loss_and_a_command() -> None:
    warnings = run_warnings(TrainConfig(), _history(0.0, 0.0, 0.0), {"iou": 0.0}, 0.5)
    assert len(warnings) == 1
    assert warnings[0].startswith("validation IoU was 0 in every one of the 3 epoch(s)")
    assert "(bce)" in warnings[0] and "--recipe best" in warnings[0]
    assert run_warnings(TrainConfig(), _history(0.0, 0.01), {"iou": 0.01}, 0.5) == []  # it learnt something once


def test_a_class_at_iou_zero_is_named() -> None:
    config = TrainConfig(loss=LossConfig(name="weighted_ce"))
    warnings = run_warnings(config, _history(0.3), {"class_iou": [0.9, 0.0, 0.4, 0.0]}, None, ["sky", "pole", "road"])
    assert [w.split(" has IoU 0")[0] for w in warnings] == ["pole (class 1)", "class 3 (class 3)"]
    assert "an unweighted loss; try --set loss.balance_classes=tempered" in warnings[0]
    advice = run_warnings(TrainConfig(), _history(0.3), {"class_iou": [0.9, 0.0]}, None, balance_classes="tempered")[0]
    assert "tempered class weights; try --set loss.balance_classes=inverse" in advice


@pytest.mark.parametrize(("threshold", "count"), [(THRESHOLDS[0], 1), (THRESHOLDS[-1], 1), (0.5, 0), (None, 0)])
def test_a_threshold_at_the_sweeps_edge_is_a_warning(threshold: float | None, count: int) -> None:
    warnings = run_warnings(TrainConfig(recipe="fast"), _history(0.4), {"iou": 0.4}, threshold)
    assert len(warnings) == count
    if count:
        assert "is the lowest" in warnings[0] or "is the highest" in warnings[0]


def test_a_run_that_cannot_learn_ends_with_the_warning_in_its_last_lines_and_report(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Noise images whose masks hold one random pixel: nothing to learn, so the model predicts no foreground."""
    rng = np.random.default_rng(0)
    for index in range(12):
        write_png(tmp_path / "d" / "images" / f"n{index}.png", rng.integers(0, 256, (24, 24), dtype=np.uint8))
        mask = np.zeros((24, 24), np.uint8)
        mask[rng.integers(0, 24), rng.integers(0, 24)] = 255
        write_png(tmp_path / "d" / "masks" / f"n{index}.png", mask)
    caplog.set_level("INFO", logger="unetkit")
    result = unetkit.train(tmp_path / "d", tmp_path / "run", recipe="seed", epochs=2, batch_size=4,
                           preset="small", optim={"lr": 0.01})
    assert result.warnings and result.warnings[0].startswith("validation IoU was 0 in every one of the 2 epoch(s)")
    assert caplog.records[-1].levelname == "WARNING" and "validation IoU was 0" in caplog.records[-len(result.warnings)].message
    page = (tmp_path / "run" / "report.html").read_text()
    assert page.index('class="warning"') < page.index("Run folder")  # at the top of the report
    assert unetkit.load_model(result.model_path).training["warnings"] == result.warnings
