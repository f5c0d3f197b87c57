from __future__ import annotations

from pathlib import Path

import pytest

from unetkit.cli.main import build_train_config, make_parser
from unetkit.config import DataConfig, TrainConfig, dump_yaml, from_dict, load_yaml
from unetkit.errors import UserError


def parse(*argv: str):
    return make_parser().parse_args(["train", "--out", "run", *argv])


def test_flags_override_yaml_which_overrides_the_preset(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("preset: small\nepochs: 7\nloss: bce_dice\nmodel: {batch_norm: true}\n"
                                     "data: {val_fraction: 0.3}\n")
    config = build_train_config(parse("--config", str(tmp_path / "c.yaml"), "--epochs", "9", "--data", "D"))
    assert config.preset == "small" and config.model.start_neurons == 8 and config.model.batch_norm
    assert config.epochs == 9 and config.loss == "bce_dice"
    assert config.data.val_fraction == 0.3 and config.data.data_dir == "D"


def test_defaults_are_the_seed_recipe() -> None:
    config = build_train_config(parse())
    assert config.model.start_neurons == 16 and config.model.dropout == 0.5 and not config.model.batch_norm
    assert (config.batch_size, config.lr, config.loss, config.monitor) == (32, 1e-3, "bce", "val_loss")
    assert (config.early_stopping_patience, config.plateau_patience, config.plateau_factor) == (10, 5, 0.1)
    assert (config.amp, config.compile, config.sync_batchnorm) == ("auto", False, False)


def test_compile_flag_and_sync_batchnorm_setting() -> None:
    config = build_train_config(parse("--compile", "--set", "sync_batchnorm=true"))
    assert config.compile and config.sync_batchnorm


def test_yaml_round_trip_of_the_resolved_config(tmp_path: Path) -> None:
    config = TrainConfig(out_dir="r", epochs=5, data=DataConfig(data_dir="d", size_policy="resize"))
    (tmp_path / "c.yaml").write_text(dump_yaml(config))
    assert from_dict(TrainConfig, load_yaml(tmp_path / "c.yaml")) == config


def test_unknown_field_and_wrong_type_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="'data.val_fractoin' is unknown"):
        from_dict(TrainConfig, {"data": {"val_fractoin": 0.1}})
    with pytest.raises(UserError, match="epochs"):
        from_dict(TrainConfig, {"epochs": "many"})
    with pytest.raises(UserError, match="unknown model preset 'huge'"):
        build_train_config(parse("--preset", "huge"))


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
    with pytest.raises(UserError, match="class_weights"):
        from_dict(TrainConfig, {"class_weights": [1, "a"]})
    with pytest.raises(UserError, match="not valid YAML"):
        build_train_config(parse("--set", "lr=[1,"))
