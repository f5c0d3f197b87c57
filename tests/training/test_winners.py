"""Real (short) trainings of the encoder U-Net with the TGS winners' options: snapshot ensembles,
SWA, the second stage and pad_crop, resumed exactly; the model files predict like any other."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from unetkit.api import evaluate, train
from unetkit.config import EvaluateConfig
from unetkit.data.synthetic import generate_synthetic
from unetkit.export.model_file import load_model
from unetkit.models.ensemble import Ensemble
from unetkit.training import loop
from unetkit.training.checkpoint import load_checkpoint
from unetkit.training.recipes import resolve_train_config

pytestmark = pytest.mark.slow
TINY_UNET = {"arch": "unet", "encoder": "resnet10t", "start_neurons": 2, "attention": "scse", "hypercolumn": True,
             "deep_supervision": True, "classification_head": True}


@pytest.fixture(scope="module")
def data_32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("syn32") / "set", 20, size=32, seed=5)


def winners(data: Path, out: Path, **layer: object) -> dict:
    return {"recipe": "seed", "out_dir": str(out),
            "data": {"data_dir": str(data), "size_policy": "pad_crop", "pad_to": 40, "crop": 32},
            "model": TINY_UNET, "epochs": 4, "batch_size": 8, "optim": {"name": "adamw", "lr": 2e-3},
            "loss": {"name": "bce", "second_name": "lovasz_elu", "second_at": 0.3, "second_lr": 1e-3},
            "schedule": {"name": "sgdr", "cycles": 2, "snapshots": True}, **layer}


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_snapshots_with_a_second_stage_resume_exactly_into_one_ensemble(data_32: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    straight = train(resolve_train_config(winners(data_32, tmp_path / "straight")))
    saved = load_model(straight.model_path)
    assert isinstance(saved.net, Ensemble) and len(saved.net.members) == 2  # one member per SGDR cycle
    assert saved.training["weights"] == "2 SGDR snapshots" and saved.preprocess.size_policy == "pad"

    after_epoch = loop._after_epoch

    def killed_after_two(config, monitor, run_dir, parts, preprocess, state, row, observer):  # noqa: ANN001, ANN202
        after_epoch(config, monitor, run_dir, parts, preprocess, state, row, observer)
        if state.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_after_epoch", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        train(resolve_train_config(winners(data_32, tmp_path / "resumed")))
    checkpoint = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.safetensors")
    assert (checkpoint.state.epoch, checkpoint.state.stage) == (2, 2)  # the second stage began in epoch 2 (30%)
    assert checkpoint.state.snapshots == 0  # the first cycle ends with epoch 2: taken before epoch 3's first step
    monkeypatch.setattr(loop, "_after_epoch", after_epoch)
    resumed = train(resolve_train_config(winners(data_32, tmp_path / "resumed")), resume=True)
    a, b = rows(tmp_path / "straight" / "metrics.csv"), rows(tmp_path / "resumed" / "metrics.csv")
    assert len(a) == len(b) == 4
    for column in ("train_loss", "val_loss", "lr"):
        assert float(b[3][column]) == pytest.approx(float(a[3][column]), abs=1e-6), column
    assert resumed.threshold == straight.threshold
    assert resumed.val_metrics["tgs_map"] == pytest.approx(straight.val_metrics["tgs_map"], abs=1e-9)
    scores = evaluate(EvaluateConfig(model_path=str(resumed.model_path), data_dir=str(data_32),
                                     csv_path=str(tmp_path / "e.csv")))
    assert scores.metrics["n_images"] == 20


def test_swa_averages_the_epochs_after_its_start_and_recomputes_batch_norm(data_32: Path, tmp_path: Path) -> None:
    layer = winners(data_32, tmp_path / "swa", schedule={"name": "constant"}, optim={"name": "adamw", "lr": 2e-3,
                                                                                      "swa_start": 0.5})
    result = train(resolve_train_config(layer))
    saved = load_model(result.model_path)
    assert saved.training["weights"] == "SWA of 3 epochs"  # the ends of epochs 2, 3 and 4 (progress 0.5, 0.75, 1)
    last = load_checkpoint(tmp_path / "swa" / "checkpoints" / "last.safetensors")
    assert int(last.extras["swa"]["n_averaged"]) == 3
    name = next(k for k in saved.net.state_dict() if k.endswith("bn1.running_mean"))
    averaged_bn, trained_bn = saved.net.state_dict()[name], last.net.state_dict()[name]
    assert not torch.allclose(averaged_bn, trained_bn)  # statistics of the averaged weights, not copied


def test_a_time_budget_ends_a_snapshot_run_with_its_final_weights(data_32: Path, tmp_path: Path) -> None:
    layer = winners(data_32, tmp_path / "budget", epochs=200, time_budget_min=0.05,
                    early_stopping_patience=0)  # the budget, not the seed's early stopping, ends it
    result = train(resolve_train_config(layer))
    assert result.stop_reason == "time budget"
    members = load_model(result.model_path).net.members
    assert 1 <= len(members) <= 2
