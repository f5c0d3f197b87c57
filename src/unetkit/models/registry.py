"""Named model presets, created by name (after timm's registry, without import side effects)."""

from __future__ import annotations

import dataclasses
from typing import Any

from unetkit.config import ModelConfig
from unetkit.errors import UserError
from unetkit.models.unet import UNet

PRESETS: dict[str, ModelConfig] = {
    # The Keras TGS kernel's build_model(input_layer, 16): 2,158,417 parameters.
    "seed": ModelConfig(),
    # The seed with batch normalisation after every convolution: trains faster at higher rates.
    "seed-bn": ModelConfig(batch_norm=True),
    # A quarter of the seed's width, for quick experiments and CPU smoke tests.
    "small": ModelConfig(start_neurons=8),
}


def preset_config(name: str, **overrides: Any) -> ModelConfig:
    """The ModelConfig of preset `name`, with fields replaced by `overrides`."""
    if name not in PRESETS:
        raise UserError(f"unknown model preset '{name}' (known: {', '.join(PRESETS)})")
    return dataclasses.replace(PRESETS[name], **overrides)


def create_model(name: str = "seed", **overrides: Any) -> UNet:
    """A fresh, randomly initialised UNet of preset `name`."""
    return UNet(preset_config(name, **overrides))
