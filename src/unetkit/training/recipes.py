"""Training recipes and how a TrainConfig is resolved from layers of plain data.

A recipe is a named layer of TrainConfig fields laid under the user's YAML file and flags;
the model section starts from a named preset (models/registry.py). Resolution lives here, above
config.py, because it needs the model presets, and `check_train_config` asks every registry
that owns a name in the config (architectures, losses, optimisers, schedules, augmentation
presets) before anything is written.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from unetkit.config import TrainConfig, from_dict, upgrade_train_layer
from unetkit.data.augment import augment_config
from unetkit.errors import UserError
from unetkit.models.registry import check_arch, preset_config
from unetkit.training import schedule
from unetkit.training.losses import BORDER_WEIGHTED, get_loss

RECIPES: dict[str, dict[str, Any]] = {
    # The TGS kernel's recipe, faithfully: the TrainConfig defaults.
    "seed": {},
    # unetkit's best default for a time budget (benchmarks/quality.py): the seed's layers with batch
    # norm and light dropout, AdamW with a cosine schedule laid over the budget, BCE + Dice, batch 16,
    # the model chosen by TGS mAP, small components and the empty-mask rule tuned on validation.
    "fast": {"preset": "seed-bn", "model": {"dropout_first": 0.1, "dropout": 0.1}, "batch_size": 16,
             "optim": {"name": "adamw", "lr": 2e-3, "weight_decay": 1e-4},
             "schedule": {"name": "cosine", "warmup_epochs": 0.5}, "loss": {"name": "bce_dice"},
             "monitor": "val_map", "early_stopping_patience": 0, "decision": {"tune_postprocess": True}},
}


def _merge_into(target: dict[str, Any], layer: dict[str, Any]) -> None:
    """Merge `layer` into `target`, section by section (a section's fields merge, scalars replace)."""
    for key, value in upgrade_train_layer(layer).items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            target[key] = {**target[key], **value}
        else:
            target[key] = dict(value) if isinstance(value, dict) else value


def resolve_train_config(*layers: dict[str, Any]) -> TrainConfig:
    """One TrainConfig from layers of plain data, later layers winning field by field.

    Under all layers lie the recipe they name (default "seed") and, for the `model`
    section, the model preset they name (default "seed"). Old flat field names are moved
    into their sections (config.MOVED_FIELDS).
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        _merge_into(merged, layer)
    recipe = merged.get("recipe", "seed")
    if not isinstance(recipe, str) or recipe not in RECIPES:
        raise UserError(f"unknown recipe '{recipe}' (known: {', '.join(RECIPES)})")
    values: dict[str, Any] = {}
    _merge_into(values, RECIPES[recipe])
    _merge_into(values, merged)
    preset = values.get("preset", "seed")
    if not isinstance(preset, str):
        raise UserError(f"config field 'preset': {preset!r} must be a preset name")
    model_values = values.pop("model", None) or {}
    if not isinstance(model_values, dict):
        raise UserError("config section 'model' must be a mapping of field: value")
    values["model"] = {**dataclasses.asdict(preset_config(preset)), **model_values}
    values["recipe"] = recipe
    config = from_dict(TrainConfig, values)
    check_train_config(config)
    return config


def check_train_config(config: TrainConfig) -> None:
    """Every name in `config` that a registry owns, checked by that registry (one line each)."""
    check_arch(config.model)
    get_loss(config.loss.name)
    schedule.check_names(config)
    augment_config(config.data.augment, config.data.augment_params)
    if config.model.multilabel and config.loss.name in BORDER_WEIGHTED:
        raise UserError(f"config field 'loss.name': {config.loss.name} is not available with model.multilabel yet")
