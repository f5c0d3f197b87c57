from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from unetkit.api import train_config
from unetkit.cli.main import make_parser, train_fields
from unetkit.config import DataConfig, TrainConfig, dump_yaml, from_dict, load_yaml
from unetkit.errors import UserError
from unetkit.training.recipes import DEFAULT_BUDGET_MIN


def parse(*argv: str):
    return make_parser().parse_args(["train", "--out", "run", *argv])


def build_train_config(args) -> TrainConfig:
    """The config `unetkit train` with these flags trains."""
    return train_config(config=args.config, **train_fields(args))


def test_flags_override_yaml_which_overrides_the_preset(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("preset: small\nepochs: 7\nloss: {name: bce_dice}\nmodel: {batch_norm: true}\n"
                                     "data: {val_fraction: 0.3}\n")
    config = build_train_config(parse("--config", str(tmp_path / "c.yaml"), "--epochs", "9", "--data", "D"))
    assert config.preset == "small" and config.model.start_neurons == 8 and config.model.batch_norm
    assert config.epochs == 9 and config.loss.name == "bce_dice"
    assert config.data.val_fraction == 0.3 and config.data.data_dir == "D"


def test_the_default_is_best_with_a_stated_length_and_seed_is_one_flag_away() -> None:
    default = build_train_config(parse("--device", "cpu"))
    assert (default.recipe, default.model.start_neurons, default.optim.ema_decay, default.batch_size) == \
        ("best-cpu", 8, 0.998, 16)
    assert default.time_budget_min == DEFAULT_BUDGET_MIN == 10  # neither --epochs nor --time-budget: a stated length
    assert default.epochs is None  # the budget ends the run, not the seed's 200 epochs
    capped = build_train_config(parse("--device", "cpu", "--epochs", "5"))
    assert (capped.epochs, capped.time_budget_min) == (5, None)
    budget = build_train_config(parse("--device", "cpu", "--time-budget", "3"))
    assert (budget.epochs, budget.time_budget_min) == (None, 3)
    both = build_train_config(parse("--device", "cpu", "--time-budget", "3", "--epochs", "7"))
    assert (both.epochs, both.time_budget_min) == (7, 3)
    with pytest.raises(UserError, match="'epochs': none .* needs time_budget_min"):
        TrainConfig(epochs=None)
    config = build_train_config(parse("--recipe", "seed"))
    assert config.time_budget_min is None and config.epochs == 200  # the kernel's, early stopping and all
    assert config.model.arch == "seed_unet" and config.model.start_neurons == 16 and config.model.dropout == 0.5
    assert not config.model.batch_norm
    assert (config.batch_size, config.optim.lr, config.loss.name, config.monitor) == (32, 1e-3, "bce", "val_loss")
    assert (config.early_stopping_patience, config.schedule.plateau_patience, config.schedule.plateau_factor) == (10, 5, 0.1)
    assert (config.runtime.amp, config.runtime.compile, config.runtime.sync_batchnorm) == ("auto", False, False)


def test_compile_flag_and_sync_batchnorm_setting() -> None:
    config = build_train_config(parse("--compile", "--set", "runtime.sync_batchnorm=true"))
    assert config.runtime.compile and config.runtime.sync_batchnorm


def test_class_balance_of_files_from_before_the_choices_reads_as_inverse_or_none() -> None:
    # model files and YAML written when loss.balance_classes was a bool: true, false (and YAML 1.1's on/off)
    for old, now in ((True, "inverse"), (False, "none"), ("on", "inverse"), ("off", "none")):
        assert from_dict(TrainConfig, {"loss": {"balance_classes": old}}).loss.balance_classes == now
    config = build_train_config(parse("--set", "loss.balance_classes=true"))
    assert config.loss.balance_classes == "inverse"
    with pytest.raises(UserError, match="'loss.balance_classes': 'half' is not one of none, inverse, tempered, auto"):
        build_train_config(parse("--set", "loss.balance_classes=half"))


def test_on_and_off_settings_survive_yaml_reading_them_as_booleans() -> None:
    # YAML 1.1 (PyYAML) reads `off` and `on` as False and True; the README's `--set runtime.amp=off` must work.
    config = build_train_config(parse("--set", "runtime.amp=off", "--set", "runtime.device_batches=on"))
    assert (config.runtime.amp, config.runtime.device_batches) == ("off", "on")
    with pytest.raises(UserError, match="'runtime.amp': 'on' is not one of"):
        build_train_config(parse("--set", "runtime.amp=on"))


@pytest.mark.parametrize(("layer", "message"), [
    ({"lr": 0.01}, "config field 'lr' is unknown"),
    ({"loss": "dice"}, "config section 'loss' must be a mapping, got str"),
    ({"device": "cpu"}, "config field 'device' is unknown"),
])
def test_flat_names_from_before_the_sections_are_refused_in_one_line(layer: dict, message: str, tmp_path: Path) -> None:
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(layer))
    with pytest.raises(UserError, match=message):
        build_train_config(parse("--config", str(tmp_path / "old.yaml")))
    with pytest.raises(UserError, match=message):
        from_dict(TrainConfig, layer)


def test_section_paths_and_section_mappings_mix() -> None:
    config = build_train_config(parse("--set", "optim={lr: 0.5, weight_decay: 0.1}", "--set", "optim.name=adamw",
                                      "--set", "data.augment_params.p_vflip=0.5"))
    assert (config.optim.lr, config.optim.weight_decay, config.optim.name) == (0.5, 0.1, "adamw")
    assert config.data.augment_params == {"p_vflip": 0.5}


def test_yaml_readings_are_undone_by_the_fields_type() -> None:
    config = from_dict(TrainConfig, {"optim": {"lr": "1e-3"}, "runtime": {"amp": False}, "loss": {"class_weights": [1, 2]}})
    assert (config.optim.lr, config.runtime.amp, config.loss.class_weights) == (1e-3, "off", (1.0, 2.0))


@pytest.mark.parametrize(("assignment", "message"), [
    ("loss.name=dicey", "'loss.name': 'dicey' is not one of bce"),
    ("optim.name=lion", "'optim.name': 'lion' is not one of adam"),
    ("schedule.name=warm", "'schedule.name': 'warm' is not one of plateau"),
    ("data.augment=wild", "'data.augment': 'wild' is not one of none"),
    ("model.arch=vit", "'model.arch': unknown architecture 'vit'"),
    ("preset=huge", "unknown model preset 'huge'"),
])
def test_names_are_checked_by_the_registry_that_owns_them(assignment: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_train_config(parse("--set", assignment))


def test_yaml_round_trip_of_the_resolved_config(tmp_path: Path) -> None:
    config = TrainConfig(out_dir="r", epochs=5, data=DataConfig(data_dir="d", size_policy="resize"))
    (tmp_path / "c.yaml").write_text(dump_yaml(config))
    assert from_dict(TrainConfig, load_yaml(tmp_path / "c.yaml")) == config


def test_unknown_field_and_wrong_type_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="'data.val_fractoin' is unknown"):
        from_dict(TrainConfig, {"data": {"val_fractoin": 0.1}})
    with pytest.raises(UserError, match="epochs"):
        from_dict(TrainConfig, {"epochs": "many"})


def test_unreadable_yaml_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("epochs: [1,\n")
    with pytest.raises(UserError, match=r"bad\.yaml: not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")


def test_out_of_range_values_are_one_line_errors() -> None:
    from unetkit.data.augment import augment_config

    with pytest.raises(UserError, match="p_elastic.*at most 1.0"):
        augment_config("strong", {"p_elastic": 2})
    with pytest.raises(UserError, match="'fold'.*needs folds >= 2"):
        TrainConfig(fold=0)
    with pytest.raises(UserError, match="loss.class_weights"):
        from_dict(TrainConfig, {"loss": {"class_weights": [1, "a"]}})
    with pytest.raises(UserError, match="not valid YAML"):
        build_train_config(parse("--set", "optim.lr=[1,"))


@pytest.mark.parametrize(("value", "stored"), [(True, "imagenet"), (False, "none"), ("w.safetensors", "w.safetensors")])
def test_pretrained_takes_yaml_booleans_and_paths(value: object, stored: str) -> None:
    assert from_dict(TrainConfig, {"model": {"arch": "unet", "pretrained": value}}).model.pretrained == stored


def test_numpy_scalars_and_paths_become_plain_values() -> None:
    import math
    from pathlib import Path

    import numpy as np

    from unetkit.config import DataConfig, LossConfig, TrainConfig

    config = TrainConfig(epochs=np.int64(3), out_dir=Path("runs/x"), data=DataConfig(val_fraction=np.float32(0.25)),
                         loss=LossConfig(class_weights=[1, np.float64(2.5)]))
    assert (type(config.epochs), config.out_dir, type(config.data.val_fraction)) == (int, "runs/x", float)
    assert config.loss.class_weights == (1.0, 2.5) and all(math.isfinite(w) for w in config.loss.class_weights)


def test_yaml_merge_keys_still_override_as_yaml_says(tmp_path) -> None:
    from unetkit.config import load_yaml

    path = tmp_path / "m.yaml"
    path.write_text("base: &base {lr: 0.1, weight_decay: 0.0}\noptim:\n  <<: *base\n  lr: 0.01\n")
    assert load_yaml(path)["optim"] == {"lr": 0.01, "weight_decay": 0.0}


WRITTEN = Path(__file__).parent / "fixtures" / "written-6dfc14c"  # files written by earlier code (its README.md)


def test_config_model_file_and_checkpoint_written_by_earlier_code_still_load() -> None:
    import torch

    from unetkit.export.model_file import load_model
    from unetkit.training.checkpoint import load_checkpoint
    from unetkit.training.recipes import resolve_train_config

    stored = from_dict(TrainConfig, load_yaml(WRITTEN / "config.yaml"))
    assert (stored.model.start_neurons, stored.model.depth, stored.epochs, stored.optim.lr) == (2, 2, 1, 1e-3)
    assert resolve_train_config(load_yaml(WRITTEN / "config.yaml")) == stored  # the base of --resume
    saved, checkpoint = load_model(WRITTEN / "model.safetensors"), load_checkpoint(WRITTEN / "checkpoint.safetensors")
    assert saved.config == stored.model and checkpoint.config == stored and saved.threshold == 0.34
    assert (checkpoint.state.epoch, checkpoint.state.steps) == (1, 2)
    x = torch.linspace(0, 1, 32 * 32).reshape(1, 1, 32, 32)
    with torch.no_grad():  # the logits the writing code computed for this input
        assert saved.net.eval()(x).sum().item() == pytest.approx(-625.4862060546875, abs=1e-3)
        assert checkpoint.net.eval()(x).sum().item() == pytest.approx(-625.4862060546875, abs=1e-3)
