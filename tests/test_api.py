"""The Python API: the demo job (what `make demo` runs), and the two doors — keywords resolve, refuse and
predict as the CLI's flags do."""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import unetkit
from unetkit.api import demo, train_config
from unetkit.cli.main import main, make_parser, train_fields
from unetkit.config import TrainConfig
from unetkit.data.io import read_array
from unetkit.data.synthetic import generate_synthetic
from unetkit.errors import UserError
from unetkit.models import count_parameters

pytestmark = pytest.mark.xdist_group("api")  # one xdist worker: the module's trained run is built once


@pytest.mark.slow
def test_demo_writes_every_promised_file(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    result = demo(root, n_train=24, n_test=6, time_budget_min=0.03, epochs=2)
    for name in ("model.safetensors", "metrics.csv", "curves.png", "overlays.png", "evaluation.csv",
                 "threshold_sweep.csv", "checkpoints/last.safetensors"):
        assert (root / name).stat().st_size > 100, name
    masks = sorted((root / "predictions").glob("syn_*.png"))
    assert len(masks) == 6
    assert np.asarray(Image.open(masks[0])).shape == (101, 101)
    assert result.metrics["n_images"] == 6 and 0.0 <= result.metrics["iou"] <= 1.0
    assert Image.open(root / "overlays.png").size[0] >= 600


# --- Two doors, one house: the Python API resolves, refuses and predicts as the CLI does ------------

def _cli_config(*argv: str) -> TrainConfig:
    args = make_parser().parse_args(["train", *argv])
    return train_config(config=args.config, **train_fields(args))  # what `unetkit train` trains


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("doors") / "syn", 8, size=32, seed=5)


def test_cli_flags_and_api_keywords_resolve_to_equal_configs(tiny_data: Path) -> None:
    cli = _cli_config("--data", str(tiny_data), "--out", "runs/x", "--recipe", "fast", "--time-budget", "10",
                      "--set", "optim.lr=0.003", "--set", "model.start_neurons=4")
    dotted = unetkit.train_config(tiny_data, out="runs/x", recipe="fast", time_budget=10,
                                  **{"optim.lr": 0.003, "model.start_neurons": 4})
    sections = unetkit.train_config(str(tiny_data), "runs/x", recipe="fast", time_budget=10, optim={"lr": 0.003},
                                    model={"start_neurons": 4})
    assert cli == dotted == sections
    assert (cli.optim.name, cli.optim.lr, cli.loss.name, cli.batch_size, cli.time_budget_min) == \
        ("adamw", 0.003, "bce_dice", 16, 10.0)


def test_a_hand_built_trainconfig_gets_its_recipe(tiny_data: Path) -> None:
    config = unetkit.train_config(TrainConfig(recipe="fast", epochs=3, out_dir="r"))
    assert (config.optim.name, config.loss.name, config.batch_size, config.schedule.name, config.epochs) == \
        ("adamw", "bce_dice", 16, "cosine", 3)
    assert config.model.batch_norm is True  # fast's preset, seed-bn
    assert unetkit.train_config(config) is config  # a resolved config trains as it is


@pytest.mark.parametrize(("call", "message"), [
    (lambda d: unetkit.train_config(d, out="r", **{"data.data_dir": "other"}),
     r"^data\.data_dir 'other' contradicts data '.*syn' \(both set data\.data_dir\); give one$"),
    (lambda d: _cli_config("--data", str(d), "--out", "r", "--set", "data.data_dir=other"),
     r"^--set data\.data_dir 'other' contradicts --data '.*syn' \(both set data\.data_dir\); give one$"),
    (lambda d: _cli_config("--data", str(d), "--out", "R", "--set", "out_dir=Other"),
     r"^--set out_dir 'Other' contradicts --out 'R'"),
    (lambda d: unetkit.train_config(d, out="r", model={"encoder": "resnet18"}),
     r"^config field 'model\.encoder': architecture 'seed_unet' does not take it"),
    (lambda d: unetkit.train_config(d, out="r", epochz=3), r"^config field 'epochz' is unknown"),
    (lambda d: unetkit.train(42), r"^train: data must be a folder \(str or path\) or a TrainConfig, not int$"),
    (lambda d: unetkit.train(str(d)), r"^no output folder given"),
    (lambda d: unetkit.predict({"model": "m"}), r"^predict: the first argument must be a PredictConfig or a path, not dict$"),
    (lambda d: unetkit.predict("m.safetensors", "in", "out", tile_size=3),
     r"^predict: unknown option tile_size \(options: "),
    (lambda d: unetkit.evaluate("m.safetensors"), r"^evaluate: data_dir is required \(or images_dir and masks_dir, or pairs\)$"),
])
def test_each_door_refuses_with_one_line(tiny_data: Path, call, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        call(tiny_data)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: unetkit.UNet(encoder="resnet34", attention="scse"),
     r"^UNet \(arch 'seed_unet'\) takes no option attention, encoder"),
    (lambda: unetkit.create_model("seed_unet", encoder="resnet34"),
     r"^config field 'model\.encoder': architecture 'seed_unet' does not take it"),
    (lambda: unetkit.create_model("unet", encoder="nope"), r"^config field 'model\.encoder': unknown timm model 'nope'"),
    (lambda: unetkit.create_model("unet", dropout=0.3), r"^config field 'model\.dropout': architecture 'unet' does not"),
    (lambda: unetkit.create_model("seed", colour=3), r"^create_model\('seed'\): unknown option colour"),
    (lambda: unetkit.create_model("vit"), r"^unknown model 'vit' \(architectures: seed_unet, unet; presets: "),
])
def test_models_refuse_options_that_are_not_theirs(build, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        build()
    assert "\n" not in str(caught.value)


def test_create_model_builds_plain_modules_returning_logits() -> None:
    import torch

    assert count_parameters(unetkit.create_model("seed_unet")) == 2_158_417
    assert count_parameters(unetkit.UNet()) == 2_158_417
    net = unetkit.create_model("small", num_classes=3).eval()
    assert isinstance(net, torch.nn.Module)
    with torch.no_grad():
        logits = net(torch.zeros(2, 1, 37, 45))
    assert logits.shape == (2, 3, 37, 45)
    assert float(logits.min()) < 0 or float(logits.max()) > 1  # raw logits, no activation inside
    loss = unetkit.losses.soft_dice_loss(torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4))
    assert 0.0 < float(loss) <= 1.0
    assert unetkit.metrics.iou is not None


FAST_RUN_CALLS: Counter[str] = Counter()  # who called check_train_config and resolve_device while fast_run trained


def _counted(real: Callable[..., Any], key: str) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        FAST_RUN_CALLS[key] += 1
        return real(*args, **kwargs)
    return counted


@pytest.fixture(scope="module")
def fast_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of TrainConfig(recipe='fast') through the API (module-scoped: trained once)."""
    import sys
    from unittest import mock

    import unetkit.report
    import unetkit.training.runner  # noqa: F401 - imported so that its names are counted below

    run = tmp_path_factory.mktemp("fast") / "run"
    config = TrainConfig(recipe="fast", epochs=1, out_dir=str(run), batch_size=4,
                         data=dataclasses.replace(TrainConfig().data, data_dir=str(tiny_data)))
    with contextlib.ExitStack() as patches:
        for name, module in list(sys.modules.items()):
            for function in ("check_train_config", "resolve_device"):
                if name.startswith("unetkit.") and hasattr(module, function):
                    counted = _counted(getattr(module, function), f"{name}.{function}")
                    patches.enter_context(mock.patch.object(module, function, counted))
        unetkit.train(config, model={"start_neurons": 4})
    return run


def test_a_run_checks_its_config_once_and_resolves_its_device_once(fast_run: Path) -> None:
    assert FAST_RUN_CALLS == {"unetkit.training.recipes.check_train_config": 1,  # as resolve_train_config resolves
                              "unetkit.training.runner.resolve_device": 1,  # where the run starts, then passed down
                              "unetkit.inference.predictor.resolve_device": 1}  # the run report's sample predictions


def test_trainconfig_recipe_trains_fasts_optimiser_loss_and_schedule(fast_run: Path) -> None:
    import yaml

    stored = yaml.safe_load((fast_run / "config.yaml").read_text())
    assert (stored["recipe"], stored["optim"]["name"], stored["loss"]["name"], stored["schedule"]["name"]) == \
        ("fast", "adamw", "bce_dice", "cosine")
    assert (stored["batch_size"], stored["model"]["start_neurons"], stored["model"]["batch_norm"]) == (4, 4, True)


def test_in_memory_prediction_equals_the_cli_files(fast_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    model_path = fast_run / "model.safetensors"
    assert main(["predict", "--model", str(model_path), "--input", str(tiny_data / "images"),
                 "--out", str(tmp_path / "masks"), "--tile", "16", "--probabilities"]) == 0
    model = unetkit.load_model(model_path)
    files = sorted((tiny_data / "images").glob("*.png"))
    images = [np.asarray(Image.open(f)) for f in files]
    masks = model.predict(images, tile=16)
    for file, mask in zip(files, masks):
        written = np.asarray(Image.open(tmp_path / "masks" / file.name))
        assert mask.shape == written.shape == (32, 32) and mask.dtype == np.uint8
        assert np.array_equal(mask * 255, written)
    batch = np.stack(images)[..., 0] if images[0].ndim == 3 else np.stack(images)
    assert np.array_equal(model.predict(batch, tile=16), np.stack(masks))  # (N, H, W) in, (N, H, W) out
    probabilities = model.probabilities(images[0], tile=16)
    assert probabilities.shape == (1, 32, 32) and probabilities.dtype == np.float32
    written = read_array(tmp_path / "masks" / f"{files[0].stem}_prob.tif")  # (H, W, K)
    assert np.abs(probabilities - np.moveaxis(written, -1, 0)).max() < 1e-6


@pytest.mark.parametrize(("images", "message"), [
    (np.zeros((2, 1, 64, 64), np.float32), r"^images\[0\] of shape \(1, 64, 64\) looks channels-first"),
    (np.full((8, 8), np.nan, np.float32), r"^image: 64 of 64 pixels are NaN or infinite"),
    (np.zeros((8, 8), np.complex64), r"^image: dtype complex64 is not an image's"),
    (np.zeros((2, 2, 8, 8, 1)), r"^images of shape \(2, 2, 8, 8, 1\): expected"),
])
def test_in_memory_prediction_refuses_what_files_refuse(fast_run: Path, images: np.ndarray, message: str) -> None:
    model = unetkit.load_model(fast_run / "model.safetensors")
    with pytest.raises(UserError, match=message):
        model.predict(images)
    with pytest.raises(UserError, match="unknown prediction option tiles"):
        model.predict(np.zeros((8, 8), np.uint8), tiles=3)
