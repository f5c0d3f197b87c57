"""The U-Net, assembled from `blocks.py` after the Keras TGS kernel's `build_model` (arch "seed_unet"). With the
default (preset "seed") it has exactly 2,158,417 parameters, like the Keras model. `forward` returns logits: sigmoid
or softmax belong to inference (outputs.py), so losses can use their stable forms."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from unetkit.config import ModelConfig
from unetkit.errors import UserError
from unetkit.models.base import SegmentationNet
from unetkit.models.blocks import UPSAMPLINGS, DoubleConv, Down, Up


class UNet(SegmentationNet):
    """U-Net: (B, in_channels, H, W) float -> logits (B, num_classes, H, W). `UNet()` is the seed;
    `UNet(num_classes=3)` or `UNet(ModelConfig(...))` change it."""

    OPTIONS = frozenset({"start_neurons", "depth", "dropout_first", "dropout", "batch_norm", "upsampling"})

    def __init__(self, config: ModelConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        foreign = sorted(set(overrides) - self.OPTIONS - {"in_channels", "num_classes", "multilabel"})
        if foreign:
            raise UserError(f"UNet (arch 'seed_unet') takes no option {', '.join(foreign)} (its options: "
                            f"in_channels, num_classes, multilabel, {', '.join(sorted(self.OPTIONS))}); "
                            "unetkit.create_model('unet', encoder=...) builds an encoder U-Net")
        config = dataclasses.replace(config or ModelConfig(), **overrides)
        if config.arch != "seed_unet":
            raise ValueError(f"UNet builds arch 'seed_unet', not {config.arch!r}; use models.build_model")
        self.check_config(config)
        self.config = config
        widths = [config.start_neurons * 2**level for level in range(config.depth + 1)]
        inputs = [config.in_channels, *widths]  # inputs[level]: channels into encoder level `level`
        self.encoders = nn.ModuleList(DoubleConv(inputs[level], widths[level], batch_norm=config.batch_norm)
                                      for level in range(config.depth))
        self.downs = nn.ModuleList(Down(config.dropout if level else config.dropout_first) for level in range(config.depth))
        self.middle = DoubleConv(inputs[config.depth], widths[-1], batch_norm=config.batch_norm)
        self.ups = nn.ModuleList(Up(widths[level + 1], widths[level], dropout=config.dropout,
                                    batch_norm=config.batch_norm, mode=config.upsampling)
                                 for level in reversed(range(config.depth)))
        self.head = nn.Conv2d(widths[0], config.num_classes, kernel_size=1)

    @staticmethod
    def check_config(config: ModelConfig) -> None:
        """The seed's own option names, checked before a run writes anything."""
        if config.upsampling not in UPSAMPLINGS:
            raise UserError(f"config field 'model.upsampling': '{config.upsampling}' is not one of "
                            f"{', '.join(UPSAMPLINGS)}")

    @property
    def multiple(self) -> int:
        return 2**self.config.depth

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for encode, down in zip(self.encoders, self.downs):
            x = encode(x)
            skips.append(x)
            x = down(x)
        x = self.middle(x)
        for up, skip in zip(self.ups, reversed(skips)):
            x = up(x, skip)
        return self.head(x)
