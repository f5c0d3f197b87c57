"""Training recipes and how a TrainConfig is resolved from layers of plain data.

A recipe is a named layer of TrainConfig fields laid under the user's YAML file and flags;
the model section starts from a named preset (models/registry.py). Resolution lives here, above
config.py, because it needs the model presets, and `check_train_config` asks every registry
that owns a name in the config (architectures, losses, optimisers, schedules, augmentation
presets) before anything is written.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any

from unetkit.config import TrainConfig, from_dict
from unetkit.data.augment import augment_config
from unetkit.data.io import channels_equal, picture_channels
from unetkit.data.masks import DEFAULT_IGNORE_INDEX, has_ignored
from unetkit.data.pairing import DataSource, find_images, find_pairs
from unetkit.data.regions import head_or_whole
from unetkit.errors import UserError
from unetkit.models.registry import check_arch, preset_config
from unetkit.runtime import log, resolve_device
from unetkit.training import schedule
from unetkit.training.init import init_layer
from unetkit.training.losses import BORDER_WEIGHTED, get_loss


def _layered(*layers: dict[str, Any]) -> dict[str, Any]:
    """The layers merged, later ones winning section by section (a section's fields merge, scalars replace)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = dict(value) if isinstance(value, dict) else value
    return merged


_FAST: dict[str, Any] = {
    "preset": "seed-bn", "model": {"dropout_first": 0.1, "dropout": 0.1}, "batch_size": 16,
    "optim": {"name": "adamw", "lr": 2e-3, "weight_decay": 1e-4},
    "schedule": {"name": "cosine", "warmup_epochs": 0.5}, "loss": {"name": "bce_dice"},
    "monitor": "val_map", "early_stopping_patience": 0, "decision": {"tune_postprocess": True}}


RECIPES: dict[str, dict[str, Any]] = {
    # The TGS kernel's recipe, faithfully: the TrainConfig defaults.
    "seed": {},
    # The seed's layers tuned for a time budget (benchmarks/quality.py): the schedule is laid over the budget.
    "fast": _FAST,
    # The TGS winners' model and training (the GPU's `best`), its decoder at half smp's widths
    # (start_neurons 8: 128 .. 8 channels); the image-level head gates the masks.
    "winners": {"model": {"arch": "unet", "encoder": "resnet18", "start_neurons": 8, "attention": "scse",
                          "hypercolumn": True, "deep_supervision": True, "classification_head": True},
                "batch_size": 16, "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4},
                "schedule": {"name": "cosine", "warmup_epochs": 0.5},
                "loss": {"name": "bce", "second_name": "lovasz_elu", "second_at": 0.6, "balance_classes": "auto"},
                "data": {"augment": "auto", "size_policy": "pad"},
                "monitor": "auto", "early_stopping_patience": 0, "decision": {"tune_postprocess": True}},
    # The CPU's `best`, chosen by benchmarks/quality.py on TGS (benchmarks/RESULTS.md): `fast` at half
    # the width (a quarter of the work, so more epochs in the same minutes) without dropout (a short
    # budget still underfits) and with an exponential moving average of the weights (decay 0.998,
    # about the last 500 steps), which validates and predicts. The epoch-picking figure, the
    # augmentation's symmetries and the class weights are the plan's (training/plan.py).
    "best-cpu": _layered(_FAST, {"model": {"start_neurons": 8, "dropout_first": 0.0, "dropout": 0.0},
                                 "optim": {"ema_decay": 0.998}, "monitor": "auto", "data": {"augment": "auto"},
                                 "loss": {"balance_classes": "auto"}}),
    # `best` is the recipe of the device that trains: BEST_BY_DEVICE.
    "best": {},
}

# The recipe of a run whose layers name none (a TrainConfig built by hand names its own: "seed").
DEFAULT_RECIPE = "best"
# A time-budget recipe's length when the layers give neither epochs nor a budget: the minutes
# benchmarks/quality.py chose `best` at, rather than 200 epochs of a schedule laid over them.
DEFAULT_BUDGET_MIN = 10

# What `--recipe best` means on each device: on a CPU the benchmark's choice; on a GPU, where a
# larger encoder and many more epochs fit the same minutes, the winners' model.
BEST_BY_DEVICE = {"cpu": "best-cpu", "cuda": "winners"}

# best-cpu's width for class-index masks: at its half width the rarer classes of a street scene collapse into
# their neighbours (pavement into road) within a CPU budget, at the seed's width each is learned, though fewer
# epochs fit (benchmarks/RESULTS.md, CamVid). Binary masks keep the half width, the measured choice on TGS.
CLASS_INDEX_WIDTH = 16


def resolve_train_config(*layers: dict[str, Any]) -> TrainConfig:
    """One TrainConfig from layers of plain data, later layers winning field by field. Under all layers lie
    the recipe they name (DEFAULT_RECIPE when none does) and, for `model`, the preset they name ("seed")."""
    merged = _layered(*layers)
    if merged.get("init_model"):  # a fine-tune lies over the model file's own training config
        merged = _layered(init_layer(merged["init_model"]), *layers)
    recipe = merged.get("recipe", DEFAULT_RECIPE)
    if not isinstance(recipe, str) or recipe not in RECIPES:
        raise UserError(f"unknown recipe '{recipe}' (known: {', '.join(RECIPES)})")
    if recipe == "best":
        recipe = best_for_device(merged)
    values = _layered(RECIPES[recipe], merged)
    if recipe != "seed" and "epochs" not in merged:  # the budget is the length, not the seed's 200 epochs
        values["epochs"] = None
        if "time_budget_min" not in merged:
            values["time_budget_min"] = DEFAULT_BUDGET_MIN
    preset = values.get("preset", "seed")
    if not isinstance(preset, str):
        raise UserError(f"config field 'preset': {preset!r} must be a preset name")
    model_values = values.pop("model", None) or {}
    if not isinstance(model_values, dict):
        raise UserError("config section 'model' must be a mapping of field: value")
    given = merged.get("model") if isinstance(merged.get("model"), dict) else {}
    data_values = values.get("data") if isinstance(values.get("data"), dict) else {}
    source = DataSource.from_fields(data_values)
    if "in_channels" not in given and source:
        detected = detected_channels(source)
        if detected is not None and detected != preset_config(preset).in_channels:
            log.info("model.in_channels %d: detected from the images of %s", detected, source)
            model_values = {**model_values, "in_channels": detected}
    if data_values and data_values.get("ignore_index") is None and has_ignored(source.classes_file()):
        log.info("data.ignore_index %d: classes.yaml names values to ignore", DEFAULT_IGNORE_INDEX)
        values["data"] = {**data_values, "ignore_index": DEFAULT_IGNORE_INDEX}
    values["model"] = {**dataclasses.asdict(preset_config(preset)), **model_values}
    model = values["model"]
    if recipe == "best-cpu" and "start_neurons" not in given and _class_index(model.get("num_classes"),
                                                                               model.get("multilabel")):
        values["model"]["start_neurons"] = CLASS_INDEX_WIDTH
    values["recipe"] = recipe
    config = from_dict(TrainConfig, values)
    check_train_config(config)
    _RESOLVED[id(config)] = config
    return config


# The configs resolve_train_config made, by identity: a resolved config equals a hand-built one of the
# same fields, but only the first has had its recipe applied (an equal copy is resolved once more).
_RESOLVED: weakref.WeakValueDictionary[int, TrainConfig] = weakref.WeakValueDictionary()


def _class_index(num_classes: Any, multilabel: Any) -> bool:
    """Whether a model predicts class indices (softmax over classes); the values may be unchecked plain data."""
    return isinstance(num_classes, int) and num_classes >= 2 and not multilabel


def width_reason(config: TrainConfig) -> str | None:
    """Why the network has its width, where the recipe chose it from the data's kind (for plan.json)."""
    model = config.model
    if config.recipe == "best-cpu" and model.start_neurons == CLASS_INDEX_WIDTH and _class_index(
            model.num_classes, model.multilabel):
        return (f"class-index masks ({model.num_classes} classes): the seed's width {CLASS_INDEX_WIDTH} rather than "
                "best-cpu's 8, at which rare classes collapse into their neighbours")
    return None


def is_resolved(config: TrainConfig) -> bool:
    """Whether `config` came out of `resolve_train_config` (its recipe and preset already applied)."""
    return _RESOLVED.get(id(config)) is config


def given_fields(config: TrainConfig) -> dict[str, Any]:
    """The fields of a hand-built TrainConfig that differ from TrainConfig's defaults, as a layer:
    what its author set, to be resolved over its recipe like a YAML file's fields."""
    default, given = dataclasses.asdict(TrainConfig()), dataclasses.asdict(config)
    layer: dict[str, Any] = {"recipe": config.recipe}  # its own, "seed" by default: TrainConfig's defaults are the seed's
    for key, value in given.items():
        if isinstance(value, dict):  # a section: its changed fields (a mapping inside one is one value)
            changed = {name: v for name, v in value.items() if default[key].get(name) != v}
            if changed:
                layer[key] = changed
        elif value != default[key] and key != "recipe":
            layer[key] = value
    return layer


def best_for_device(merged: dict[str, Any]) -> str:
    """The recipe `best` stands for on the device these layers train on (runtime.device, auto by default)."""
    runtime = merged.get("runtime") if isinstance(merged.get("runtime"), dict) else {}
    device = runtime.get("device", "auto")
    if device == "auto":
        device = resolve_device("auto").type
    # a device that is not one (or not a name) gets the CPU's recipe here and RuntimeConfig's one-line refusal next
    return BEST_BY_DEVICE[device] if isinstance(device, str) and device in BEST_BY_DEVICE else BEST_BY_DEVICE["cpu"]


def describe_recipe(config: TrainConfig) -> str:
    """The run's first words: which recipe, why, how long, and how to get the kernel's."""
    best = {chosen: device for device, chosen in BEST_BY_DEVICE.items()}
    if config.recipe in best:
        why = f"`best` on the {'GPU' if best[config.recipe] == 'cuda' else 'CPU'}, the default"
    elif config.recipe == "seed":
        why = "the 2015 TGS kernel's recipe, exactly"
    else:
        why = "chosen by name"
    length = (f"a {config.time_budget_min:g}-minute time budget" if config.time_budget_min is not None else
              f"up to {config.epochs} epochs" + (", stopping early" if config.early_stopping_patience else ""))
    kernel = "" if config.recipe == "seed" else "; --recipe seed trains the kernel's recipe"
    width = f"; start_neurons {config.model.start_neurons} for class-index masks" if width_reason(config) else ""
    return f"recipe {config.recipe} ({why}); {length}{width}{kernel}"


def detected_channels(data_dir: DataSource | str, sample: int = 8) -> int | None:
    """The channels the first few images of the data carry: 1 for gray (a gray picture saved as RGB counts
    as gray), 3 for colour, 2 or 4 for TIFF/.npy stacks (a PNG's alpha is no picture channel); None if
    unreadable (the data checks that follow say why, with the file's name)."""
    source = DataSource.of(data_dir)
    try:
        paths = [pair.image for pair in find_pairs(source)] if source.pairs else find_images(str(source.image_folder()))
        # head_or_whole: a 20000^2 TIFF is not decoded to count channels
        images = (picture_channels(head_or_whole(path), path) for path in paths[:sample])
        return max([1, *(1 if channels_equal(image) else image.shape[2] for image in images)])
    except (UserError, OSError):
        return None


def check_train_config(config: TrainConfig) -> None:
    """Every name in `config` that a registry owns, checked by that registry (one line each)."""
    check_arch(config.model)
    get_loss(config.loss.name)
    if config.loss.second_name is not None:
        get_loss(config.loss.second_name, "loss.second_name")
        if config.loss.second_name in BORDER_WEIGHTED:
            raise UserError(f"config field 'loss.second_name': {config.loss.second_name} needs its border weight maps "
                            "from the first step; use it as loss.name")
    schedule.check_names(config)
    augment_config(config.data.augment, config.data.augment_params)
    if config.model.multilabel and config.loss.name in BORDER_WEIGHTED:
        raise UserError(f"config field 'loss.name': {config.loss.name} is not available with model.multilabel yet")
    if config.schedule.snapshots and config.folds >= 2:
        raise UserError("config field 'schedule.snapshots': not available with --folds yet (each fold would be an "
                        "ensemble of its own); use optim.swa_start, or train without folds")
    if config.schedule.snapshots and config.optim.swa_start is not None:
        raise UserError("config field 'schedule.snapshots': and optim.swa_start both decide the final weights; "
                        "choose one")
