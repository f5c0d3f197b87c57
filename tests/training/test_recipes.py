"""Recipe resolution: the width the CPU's default gives class-index masks, and where its reason is recorded."""

from __future__ import annotations

from unetkit.api import train_config
from unetkit.cli.main import make_parser, train_fields
from unetkit.config import TrainConfig
from unetkit.training.recipes import CLASS_INDEX_WIDTH, describe_recipe, width_reason


def _config(*argv: str) -> TrainConfig:
    args = make_parser().parse_args(["train", "--out", "run", "--device", "cpu", *argv])
    return train_config(config=args.config, **train_fields(args))  # as `unetkit train` resolves it


def test_class_index_masks_train_at_the_seed_width_on_the_cpu_default() -> None:
    classes = _config("--num-classes", "11")
    assert (classes.recipe, classes.model.start_neurons, CLASS_INDEX_WIDTH) == ("best-cpu", 16, 16)
    assert width_reason(classes).startswith("class-index masks (11 classes): the seed's width 16")
    assert "; start_neurons 16 for class-index masks;" in describe_recipe(classes)
    binary = _config()
    assert binary.model.start_neurons == 8 and width_reason(binary) is None
    assert "class-index" not in describe_recipe(binary)


def test_the_class_width_yields_to_the_user_labels_and_other_recipes() -> None:
    assert _config("--num-classes", "11", "--set", "model.start_neurons=8").model.start_neurons == 8
    labels = _config("--num-classes", "3", "--set", "model.multilabel=true")
    assert labels.model.start_neurons == 8 and width_reason(labels) is None
    seed = _config("--num-classes", "11", "--recipe", "seed")
    assert seed.model.start_neurons == 16 and width_reason(seed) is None  # the seed's own width, not the rule's
