"""Architectures and model presets, created by name (after timm's registry, without import side effects).

`ARCHITECTURES` maps `model.arch` to the class that builds it from a ModelConfig; a new
architecture is one new file in models/ and one line here. `PRESETS` are named ModelConfigs
(the `--preset` flag). `build_model` is the one constructor every caller uses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from unetkit.config import ModelConfig
from unetkit.errors import UserError
from unetkit.models.base import SegmentationNet
from unetkit.models.encoder_unet import EncoderUNet
from unetkit.models.unet import UNet

ARCHITECTURES: dict[str, Callable[[ModelConfig], SegmentationNet]] = {
    "seed_unet": UNet,  # the Keras TGS kernel's U-Net, layer for layer (models/unet.py)
    "unet": EncoderUNet,  # a timm encoder with our decoder, scSE, hypercolumns (models/encoder_unet.py)
}

PRESETS: dict[str, ModelConfig] = {
    # The Keras TGS kernel's build_model(input_layer, 16): 2,158,417 parameters.
    "seed": ModelConfig(),
    # The seed with batch normalisation after every convolution: trains faster at higher rates.
    "seed-bn": ModelConfig(batch_norm=True),
    # A quarter of the seed's width, for quick experiments and CPU smoke tests.
    "small": ModelConfig(start_neurons=8),
}


def check_arch(config: ModelConfig) -> None:
    """Refuse an unknown `model.arch`, or options its architecture does not know, with one line;
    an architecture checks its own options in an optional `check_config(config)`."""
    if config.arch not in ARCHITECTURES:
        raise UserError(f"config field 'model.arch': unknown architecture '{config.arch}' "
                        f"(known: {', '.join(ARCHITECTURES)})")
    check = getattr(ARCHITECTURES[config.arch], "check_config", None)
    if check is not None:
        check(config)


def build_model(config: ModelConfig, *, pretrained: bool = True) -> SegmentationNet:
    """A fresh network of the architecture `config` describes, randomly initialised except for the
    encoder weights `config.pretrained` names.

    pretrained=False skips those (no download, no file read) for callers that load a state dict
    right after: model files and checkpoints carry every weight, and must load offline and without
    the original weights file. The net still records `config` as given.
    """
    check_arch(config)
    if pretrained or config.pretrained == "none":
        return ARCHITECTURES[config.arch](config)
    net = ARCHITECTURES[config.arch](dataclasses.replace(config, pretrained="none"))
    net.config = config
    return net


def preset_config(name: str, **overrides: Any) -> ModelConfig:
    """The ModelConfig of preset `name`, with fields replaced by `overrides`."""
    if name not in PRESETS:
        raise UserError(f"unknown model preset '{name}' (known: {', '.join(PRESETS)})")
    return dataclasses.replace(PRESETS[name], **overrides)


def create_model(name: str = "seed", **overrides: Any) -> SegmentationNet:
    """A fresh network of preset `name`, with ModelConfig fields replaced by `overrides`."""
    return build_model(preset_config(name, **overrides))
