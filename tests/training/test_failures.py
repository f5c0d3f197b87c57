"""Training that goes wrong says so in one line and leaves a folder the corrected command can use."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import unetkit.training.finish as finish
import unetkit.training.loop as loop
import unetkit.training.runner as runner
from unetkit.api import resume, train
from unetkit.config import DataConfig, ModelConfig, TrainConfig
from unetkit.data.io import write_png
from unetkit.data.synthetic import generate_synthetic
from unetkit.errors import UserError
from unetkit.training.recipes import detected_channels, resolve_train_config

TINY = ModelConfig(start_neurons=4, depth=2)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return generate_synthetic(tmp_path / "syn", 12, size=32, seed=5)


def config(data: Path, out: Path, **changes: object) -> TrainConfig:
    return TrainConfig(**{"out_dir": str(out), "data": DataConfig(data_dir=str(data)), "model": TINY, "batch_size": 4,
                          "epochs": 1, **changes})


def test_a_non_finite_loss_stops_training_naming_epoch_and_batch(data: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real_step, steps = loop.train_step, []

    def diverging(parts, batch):
        steps.append(1)
        loss = real_step(parts, batch)
        return loss * float("nan") if len(steps) == 2 else loss

    monkeypatch.setattr(loop, "train_step", diverging)
    with pytest.raises(UserError, match=r"epoch 1, batch 2: the training loss is nan"):
        train(config(data, tmp_path / "run"))
    assert len(steps) == 2  # stopped at once, not after spreading NaN through the epoch


def test_a_run_that_failed_before_its_first_checkpoint_does_not_block_its_folder(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise UserError("disk full (simulated)")

    monkeypatch.setattr(runner, "fit", broken)
    with pytest.raises(UserError, match="simulated"):
        train(config(data, tmp_path / "run"))
    assert (tmp_path / "run" / "config.yaml").is_file()  # what the failed run left
    monkeypatch.undo()
    result = train(config(data, tmp_path / "run"))  # the corrected command, not "already holds a training run"
    assert result.epochs_done == 1


def test_resume_refuses_other_data(data: Path, tmp_path: Path) -> None:
    train(config(data, tmp_path / "run"))
    other = tmp_path / "other"
    shutil.copytree(data, other)
    (other / "images" / "syn_00003.png").unlink()
    (other / "masks" / "syn_00003.png").unlink()
    with pytest.raises(UserError, match=r"other: is not the data .* was trained on \(11 images here, 12 in the run"):
        resume(tmp_path / "run", {"epochs": 2, "data": {"data_dir": str(other)}})
    assert resume(tmp_path / "run", {"epochs": 2}).epochs_done == 2  # the same data resumes


def test_the_threshold_is_tuned_for_iou_and_a_blind_rule_is_flagged(data: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    assert TrainConfig().decision.threshold_metric == "iou"
    real_validate = finish.validate

    def blind(net, data, preprocess, loss_fn, device, batch_size, **kwargs):  # a model that predicts nothing
        summary, kept = real_validate(net, data, preprocess, loss_fn, device, batch_size, **kwargs)
        return summary, torch.zeros_like(kept) if kept is not None else None

    monkeypatch.setattr(finish, "validate", blind)  # the final validation, the one the rule is tuned on
    with caplog.at_level(logging.WARNING, logger="unetkit"):
        result = train(config(data, tmp_path / "run"))
    assert result.val_metrics["iou"] == 0.0
    assert any("finds no foreground on validation (IoU 0" in r.getMessage() for r in caplog.records)


def test_in_channels_come_from_the_images_unless_set(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(3):
        write_png(tmp_path / "rgb" / "images" / f"{i}.png", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
        write_png(tmp_path / "rgb" / "masks" / f"{i}.png", np.zeros((16, 16), np.uint8))
    gray_as_rgb = np.repeat(rng.integers(0, 255, (16, 16, 1), dtype=np.uint8), 3, axis=2)
    write_png(tmp_path / "gray" / "images" / "0.png", gray_as_rgb)  # a gray picture saved as RGB (TGS)
    assert (detected_channels(str(tmp_path / "rgb")), detected_channels(str(tmp_path / "gray"))) == (3, 1)
    assert resolve_train_config({"data": {"data_dir": str(tmp_path / "rgb")}}).model.in_channels == 3
    assert resolve_train_config({"data": {"data_dir": str(tmp_path / "rgb")},
                                 "model": {"in_channels": 1}}).model.in_channels == 1  # set by the user: kept


def test_training_on_device_batches_runs_the_same_loop(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """runtime.device_batches=on (automatic on CUDA) holds the set on the device and augments there;
    on the CPU it exercises the same path. Both runs see every training image once per epoch."""
    from unetkit.config import RuntimeConfig
    from unetkit.data.device_batches import DeviceSamples

    seen: list[int] = []
    real = DeviceSamples.batch

    def counting(self, epoch, number, keys, rank):
        seen.extend(int(i) for i in keys)
        return real(self, epoch, number, keys, rank)

    monkeypatch.setattr(DeviceSamples, "batch", counting)
    result = train(config(data, tmp_path / "run", runtime=RuntimeConfig(device_batches="on"), epochs=2))
    assert result.epochs_done == 2 and result.n_train == 10
    assert sorted(seen) == sorted(list(range(10)) * 2)  # 10 training images (12 - 2 validation), twice
