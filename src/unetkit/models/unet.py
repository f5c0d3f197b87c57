"""The U-Net, assembled from `blocks.py` after the Keras TGS kernel's `build_model`.

With the default (preset "seed": start_neurons=16, one input channel, one class) it has
exactly 2,158,417 parameters, like the Keras model. `forward` returns logits: the sigmoid
or softmax belongs to inference, so losses can use their numerically stable forms.

Any input size works: the input is reflect-padded to a multiple of 2**depth, and the
logits are cropped back, so the output always has the input's height and width.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unetkit.config import ModelConfig
from unetkit.models.blocks import DoubleConv, Down, Up


class UNet(nn.Module):
    """U-Net segmentation network.

    `UNet()` is the seed; `UNet(num_classes=3)` or `UNet(ModelConfig(...))` change it.
    Input (B, in_channels, H, W) float; output logits (B, num_classes, H, W).
    """

    def __init__(self, config: ModelConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        config = dataclasses.replace(config or ModelConfig(), **overrides)
        self.config = config
        widths = [config.start_neurons * 2**level for level in range(config.depth + 1)]

        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        cin = config.in_channels
        for level in range(config.depth):
            self.encoders.append(DoubleConv(cin, widths[level], batch_norm=config.batch_norm))
            self.downs.append(Down(config.dropout_first if level == 0 else config.dropout))
            cin = widths[level]
        self.middle = DoubleConv(cin, widths[-1], batch_norm=config.batch_norm)
        self.ups = nn.ModuleList(
            Up(widths[level + 1], widths[level], dropout=config.dropout, batch_norm=config.batch_norm,
               mode=config.upsampling)
            for level in reversed(range(config.depth))
        )
        self.head = nn.Conv2d(widths[0], config.num_classes, kernel_size=1)

    @property
    def multiple(self) -> int:
        """Height and width are padded to a multiple of this before the encoder."""
        return 2**self.config.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x, (top, left) = pad_to_multiple(x, self.multiple)
        skips = []
        for encode, down in zip(self.encoders, self.downs):
            x = encode(x)
            skips.append(x)
            x = down(x)
        x = self.middle(x)
        for up, skip in zip(self.ups, reversed(skips)):
            x = up(x, skip)
        logits = self.head(x)
        return logits[..., top : top + height, left : left + width]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (B, C, H, W) symmetrically to multiples of `multiple`; return it and the (top, left) offsets.

    Reflection keeps image statistics at the border (zeros would look like an edge); an
    image too small to reflect (e.g. 1xN) falls back to replicating its border.
    """
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h == 0 and pad_w == 0:
        return x, (0, 0)
    top, left = pad_h // 2, pad_w // 2
    pads = (left, pad_w - left, top, pad_h - top)
    mode = "reflect" if max(top, pad_h - top) < height and max(left, pad_w - left) < width else "replicate"
    return F.pad(x, pads, mode=mode), (top, left)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
