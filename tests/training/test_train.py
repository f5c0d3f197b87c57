"""Real (short) trainings on synthetic data: convergence, resume equivalence, time budget."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from unetkit.api import train
from unetkit.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from unetkit.data.synthetic import generate_synthetic
from unetkit.export.model_file import load_model
from unetkit.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_48(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("syn48") / "set", 100, size=48, seed=11)


def small_config(data: Path, out: Path, **changes: object) -> TrainConfig:
    base = TrainConfig(out_dir=str(out), data=DataConfig(data_dir=str(data)), batch_size=8, epochs=3,
                       model=ModelConfig(start_neurons=8, batch_norm=True, dropout_first=0.1, dropout=0.1))
    return TrainConfig(**{**base.__dict__, **changes})


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_short_training_reaches_a_useful_iou(data_48: Path, tmp_path: Path) -> None:
    result = train(small_config(data_48, tmp_path / "run", epochs=12, monitor="val_iou"))
    assert result.val_metrics["iou"] >= 0.7
    assert len(rows(tmp_path / "run" / "metrics.csv")) == result.epochs_done
    for name in ("model.safetensors", "curves.png", "config.yaml", "threshold_sweep.csv", "split.json",
                 "checkpoints/best.safetensors", "checkpoints/last.safetensors"):
        assert (tmp_path / "run" / name).stat().st_size > 100, name
    saved = load_model(result.model_path)
    assert saved.threshold == result.threshold and 0.0 < saved.threshold < 1.0
    assert saved.training["config"]["epochs"] == 12


def test_resume_continues_exactly_like_an_uninterrupted_run(data_48: Path, tmp_path: Path) -> None:
    straight = train(small_config(data_48, tmp_path / "straight", epochs=3))
    train(small_config(data_48, tmp_path / "resumed", epochs=2))
    checkpoint = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.safetensors")
    assert checkpoint.state.epoch == 2 and checkpoint.optimizer["state"]  # Adam moments are kept
    resumed = train(small_config(data_48, tmp_path / "resumed", epochs=3), resume=True)
    a, b = rows(tmp_path / "straight" / "metrics.csv"), rows(tmp_path / "resumed" / "metrics.csv")
    assert len(a) == len(b) == 3
    assert float(b[2]["train_loss"]) == pytest.approx(float(a[2]["train_loss"]), abs=1e-6)
    assert float(b[2]["val_loss"]) == pytest.approx(float(a[2]["val_loss"]), abs=1e-6)
    assert resumed.threshold == straight.threshold


def test_the_weight_average_is_what_validates_is_saved_and_resumes_exactly(data_48: Path, tmp_path: Path) -> None:
    averaged = OptimConfig(ema_decay=0.9)  # a horizon of 10 steps: about one epoch here
    first = train(small_config(data_48, tmp_path / "resumed", epochs=1, optim=averaged))
    last = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.safetensors")
    assert int(last.extras["ema"]["n_averaged"]) == 10  # 80 training images in batches of 8: one update per step
    saved, trained = load_model(first.model_path).net.state_dict(), last.net.state_dict()
    ema = {key.removeprefix("module."): value for key, value in last.extras["ema"].items() if key != "n_averaged"}
    assert saved.keys() == trained.keys() == ema.keys()
    name = next(key for key in saved if key.endswith("weight"))
    assert torch.equal(saved[name], ema[name]) and not torch.allclose(saved[name], trained[name])

    resumed = train(small_config(data_48, tmp_path / "resumed", epochs=2, optim=averaged), resume=True)
    straight = train(small_config(data_48, tmp_path / "straight", epochs=2, optim=averaged))
    a, b = rows(tmp_path / "straight" / "metrics.csv"), rows(tmp_path / "resumed" / "metrics.csv")
    assert float(b[1]["val_loss"]) == pytest.approx(float(a[1]["val_loss"]), abs=1e-6)  # the average's, restored
    assert resumed.threshold == straight.threshold


def test_time_budget_stops_cleanly_with_a_model(data_48: Path, tmp_path: Path) -> None:
    result = train(small_config(data_48, tmp_path / "budget", epochs=50, time_budget_min=0.02,
                                early_stopping_patience=0))  # the budget, not the seed's early stopping, ends it
    assert result.stop_reason == "time budget"
    assert 1 <= result.epochs_done < 50
    assert load_model(result.model_path).net.config.start_neurons == 8


def test_existing_run_is_not_overwritten(data_48: Path, tmp_path: Path) -> None:
    from unetkit.errors import UserError

    train(small_config(data_48, tmp_path / "once", epochs=1))
    with pytest.raises(UserError, match="already holds a training run"):
        train(small_config(data_48, tmp_path / "once", epochs=1))
