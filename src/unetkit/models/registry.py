"""Architectures and model presets, created by name (after timm's registry, without import side effects).

A new architecture is one new file in models/ and one line in `ARCHITECTURES`; `PRESETS` are named
ModelConfigs (`--preset`); `build_model` is the one constructor every caller uses."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
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
    "seed": ModelConfig(),  # the Keras TGS kernel's build_model(input_layer, 16): 2,158,417 parameters
    "seed-bn": ModelConfig(batch_norm=True),  # batch norm after every convolution: trains faster at higher rates
    "small": ModelConfig(start_neurons=8),  # a quarter of the seed's width, for quick experiments and CPU smoke tests
}

# ModelConfig fields every architecture reads; the rest belong to the architectures that declare them.
COMMON_OPTIONS = frozenset({"arch", "in_channels", "num_classes", "multilabel"})
FIELDS = frozenset(f.name for f in dataclasses.fields(ModelConfig))


def check_arch(config: ModelConfig, given: Iterable[str] = ()) -> None:
    """Refuse an unknown `model.arch`, or options its architecture does not take, with one line; an
    architecture checks its own options' values in an optional `check_config(config)`. ModelConfig is
    the flat form of every architecture's options, so a foreign field is recognised by a value other
    than the default, or by its name in `given` (the fields a user named: keywords, YAML, --set)."""
    if config.arch not in ARCHITECTURES:
        raise UserError(f"config field 'model.arch': unknown architecture '{config.arch}' "
                        f"(known: {', '.join(ARCHITECTURES)})")
    default = ModelConfig()
    foreign = [name for name in sorted(FIELDS - options_of(config.arch))
               if name in given or getattr(config, name) != getattr(default, name)]
    if foreign:
        raise UserError(f"config field 'model.{foreign[0]}': architecture '{config.arch}' does not take it "
                        f"(its options: {', '.join(sorted(options_of(config.arch)))})")
    check = getattr(ARCHITECTURES[config.arch], "check_config", None)
    if check is not None:
        check(config)


def build_model(config: ModelConfig, *, pretrained: bool = True, given: Iterable[str] = ()) -> SegmentationNet:
    """A fresh network of the architecture `config` describes, random but for the encoder weights
    `config.pretrained` names. pretrained=False skips those (no download, no file read) for callers that
    load a state dict right after: model files and checkpoints carry every weight and must load offline;
    the net still records `config` as given. `given`: as for `check_arch`."""
    check_arch(config, given)
    net = ARCHITECTURES[config.arch](config if pretrained else dataclasses.replace(config, pretrained="none"))
    net.config = config
    return net


def preset_config(name: str, **overrides: Any) -> ModelConfig:
    if name not in PRESETS:
        raise UserError(f"unknown model preset '{name}' (known: {', '.join(PRESETS)})")
    return dataclasses.replace(PRESETS[name], **overrides)


def options_of(arch: str) -> frozenset[str]:
    """The ModelConfig fields architecture `arch` reads (all of them where it declares none)."""
    declared = ARCHITECTURES[arch].OPTIONS if arch in ARCHITECTURES else None
    return COMMON_OPTIONS | declared if declared is not None else FIELDS


def create_model(name: str = "seed", **options: Any) -> SegmentationNet:
    """A fresh network by name, after timm's `create_model`: an architecture ("seed_unet", "unet")
    or a preset ("seed", "seed-bn", "small"), with that architecture's options as keywords
    (`create_model("unet", encoder="resnet18", num_classes=3)`). It returns logits (B, K, H, W);
    an option the architecture does not take, or an unknown name, is one line."""
    base = PRESETS.get(name) or (ModelConfig(arch=name) if name in ARCHITECTURES else None)
    if base is None:
        raise UserError(f"unknown model '{name}' (architectures: {', '.join(ARCHITECTURES)}; presets: "
                        f"{', '.join(PRESETS)})")
    unknown = sorted(set(options) - FIELDS)
    if unknown:
        raise UserError(f"create_model('{name}'): unknown option {unknown[0]} (its options: "
                        f"{', '.join(sorted(options_of(options.get('arch', base.arch))))})")
    return build_model(dataclasses.replace(base, **options), given=options)
