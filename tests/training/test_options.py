"""The TGS winners' options as config: the recipes `winners` and `best`, refusals in one line, the recorded
preprocessing."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.config import DataConfig, ModelConfig, TrainConfig
from unetkit.errors import UserError
from unetkit.training.recipes import resolve_train_config
from unetkit.training.runner import training_preprocess


def test_recipe_winners_is_an_encoder_unet_with_a_lovasz_second_stage() -> None:
    config = resolve_train_config({"recipe": "winners"})
    model = config.model
    assert (model.arch, model.encoder, model.attention) == ("unet", "resnet18", "scse")
    assert model.hypercolumn and model.deep_supervision and model.classification_head
    assert (config.loss.name, config.loss.second_name, config.loss.second_at) == ("bce", "lovasz_elu", 0.6)
    assert (config.batch_size, config.schedule.name, config.data.size_policy) == (16, "cosine", "pad")


def test_recipe_best_is_the_benchmarks_choice_for_the_device() -> None:
    on_cpu = resolve_train_config({"recipe": "best", "runtime": {"device": "cpu"}})
    assert on_cpu.recipe == "best-cpu" and on_cpu.model.arch == "seed_unet"
    assert (on_cpu.model.start_neurons, on_cpu.model.batch_norm, on_cpu.optim.ema_decay) == (8, True, 0.998)
    assert (on_cpu.model.dropout_first, on_cpu.model.dropout, on_cpu.loss.name) == (0.0, 0.0, "bce_dice")
    # naming cuda picks the GPU's recipe even where no GPU is present; training would then stop on the device
    assert resolve_train_config({"recipe": "best", "runtime": {"device": "cuda"}}).recipe == "winners"
    assert resolve_train_config({"recipe": "best", "runtime": {"device": "cpu"}, "model": {"start_neurons": 4}}
                                ).model.start_neurons == 4  # the user's layers still win


@pytest.mark.parametrize(("layer", "message"), [
    ({"schedule": {"name": "sgdr", "snapshots": True}, "folds": 2}, "not available with --folds"),
    ({"schedule": {"name": "sgdr", "snapshots": True}, "optim": {"swa_start": 0.5}}, "choose one"),
    ({"schedule": {"name": "cosine", "snapshots": True}}, "needs schedule.name sgdr"),
    ({"optim": {"swa_start": 0.5, "ema_decay": 0.99}}, "both average weights"),
    ({"optim": {"swa_start": 1.0}}, "'optim.swa_start'"),
    ({"loss": {"second_name": "lovasz", "second_at": 1.0}}, "'loss.second_at': 1.0 must lie in \\(0, 1\\)"),
    ({"loss": {"second_name": "hinge"}}, "'loss.second_name': 'hinge' is not one of"),
    ({"loss": {"second_name": "weighted_ce"}}, "use it as loss.name"),
    ({"data": {"size_policy": "pad_crop", "pad_to": 128, "crop": 160}}, "'data.crop': 160 must lie in 1..data.pad_to"),
    ({"schedule": {"name": "sgdr", "cycles": 0}}, "'schedule.cycles': 0 must be >= 1"),
    ({"recipe": "best", "runtime": {"device": "tpu"}}, "'runtime.device': 'tpu' is not one of auto, cpu, cuda"),
])
def test_options_that_cannot_apply_are_refused_in_one_line(layer: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        resolve_train_config(layer)
    assert "\n" not in str(caught.value)


def test_pretrained_encoders_get_their_own_statistics_and_pad_crop_predicts_as_pad() -> None:
    images = np.full((2, 8, 8, 1), 51, np.uint8)  # the data's mean would be 0.2
    own = TrainConfig(model=ModelConfig(arch="unet", encoder="resnet18", pretrained="imagenet"),
                      data=DataConfig(size_policy="pad_crop"))
    preprocess = training_preprocess(own, images)  # no download: only the encoder's pretrained_cfg is read
    assert preprocess.mean == pytest.approx(((0.485 + 0.456 + 0.406) / 3,))  # ImageNet's, averaged for gray
    assert preprocess.std == pytest.approx(((0.229 + 0.224 + 0.225) / 3,))
    assert preprocess.size_policy == "pad"
    data = training_preprocess(TrainConfig(model=ModelConfig(arch="unet", encoder="resnet18")), images)
    assert data.mean == pytest.approx((0.2,)) and data.std == (1.0,)  # not pretrained: the data's (constant: std 1)


def test_images_larger_than_pad_to_are_refused(tmp_path) -> None:
    from unetkit.api import train
    from unetkit.data.synthetic import generate_synthetic

    data = generate_synthetic(tmp_path / "d", 4, size=40, seed=1)
    config = resolve_train_config({"out_dir": str(tmp_path / "run"), "data": {
        "data_dir": str(data), "size_policy": "pad_crop", "pad_to": 32, "crop": 32}})
    with pytest.raises(UserError, match="'data.pad_to': 32 is smaller than the images \\(40x40\\)"):
        train(config)
    assert not (tmp_path / "run").exists()
