"""`train --init MODEL`: fine-tuning from a model file (training/init.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from unetkit.api import evaluate, resume
from unetkit.cli.main import main
from unetkit.config import EvaluateConfig
from unetkit.data.preprocess import identity_preprocess
from unetkit.data.synthetic import generate_synthetic
from unetkit.errors import UserError
from unetkit.export.model_file import load_model, save_ensemble
from unetkit.models import UNet
from unetkit.training.recipes import resolve_train_config
from unetkit.training.runner import run_training

SHARES_THE_RUNS = pytest.mark.xdist_group("init")  # one xdist worker trains the module's runs, once


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A weak "reviewed" model (one epoch on 24 images), and its fine-tune on 10 corrected masks of other
    images, resolved as `train --init` and the review page's button resolve it."""
    root = tmp_path_factory.mktemp("init")
    paths = {name: generate_synthetic(root / name, n, size=48, seed=seed)
             for name, n, seed in (("base", 24, 11), ("labels", 10, 12), ("held", 30, 13))}
    device = {"runtime": {"device": "cpu"}}
    run_training(resolve_train_config({"data": {"data_dir": str(paths["base"])}, "out_dir": str(root / "reviewed"),
                                       "recipe": "seed", "preset": "small", "epochs": 1, "batch_size": 8, **device}))
    run_training(resolve_train_config({"data": {"data_dir": str(paths["labels"])}, "out_dir": str(root / "tuned"),
                                       "init_model": str(root / "reviewed" / "model.safetensors"), "epochs": 8,
                                       "batch_size": 2, **device}))
    return {**paths, "reviewed": root / "reviewed" / "model.safetensors", "tuned": root / "tuned" / "model.safetensors"}


def _held_out_iou(model: Path, data: Path) -> float:
    result = evaluate(EvaluateConfig(model_path=str(model), data_dir=str(data), csv_path=str(model.parent / "held.csv"),
                                     device="cpu"))
    return result.metrics["iou"]


@pytest.mark.slow
@SHARES_THE_RUNS
def test_fine_tuning_on_10_corrected_masks_raises_the_held_out_iou(runs: dict[str, Path]) -> None:
    before, after = _held_out_iou(runs["reviewed"], runs["held"]), _held_out_iou(runs["tuned"], runs["held"])
    # On this synthetic set: 0.357 for the reviewed model, 0.511 after the fine-tune.
    assert after > before + 0.05, (before, after)


@pytest.mark.slow
@SHARES_THE_RUNS
def test_the_fine_tune_keeps_the_models_architecture_normalisation_and_recipe(runs: dict[str, Path]) -> None:
    reviewed, tuned = load_model(runs["reviewed"]), load_model(runs["tuned"])
    assert tuned.config == reviewed.config  # the small preset, though --preset was not given again
    assert dataclasses.asdict(tuned.preprocess) == dataclasses.asdict(reviewed.preprocess)
    stored = yaml.safe_load((runs["tuned"].parent / "config.yaml").read_text())
    assert stored["init_model"] == str(runs["reviewed"]) and stored["preset"] == "small"
    assert stored["data"]["data_dir"] == str(runs["labels"]) and stored["batch_size"] == 2


def test_another_architecture_is_one_line_before_anything_is_written(tiny_model_file: Path, synthetic_dir: Path,
                                                                     tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["train", "--data", str(synthetic_dir), "--init", str(tiny_model_file), "--out", str(tmp_path / "run"),
                 "--set", "model.start_neurons=8", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "model.start_neurons 8 (file: 4)" in err
    assert not (tmp_path / "run").exists()


def test_an_ensemble_or_a_resume_is_refused_with_one_line(synthetic_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    ensemble = tmp_path / "ensemble.safetensors"
    save_ensemble(ensemble, [UNet(start_neurons=4, depth=2), UNet(start_neurons=4, depth=2)], identity_preprocess(1))
    assert main(["train", "--data", str(synthetic_dir), "--init", str(ensemble), "--out", str(tmp_path / "a")]) == 2
    assert "is an ensemble of 2 models" in capsys.readouterr().err
    assert main(["train", "--resume", "--init", str(ensemble), "--out", str(tmp_path / "b")]) == 2
    assert "--init starts a new run" in capsys.readouterr().err
    with pytest.raises(UserError, match="--init starts a new run"):  # the same refusal through the API's door
        resume(tmp_path / "b", init_model=str(ensemble))
