"""The encoder U-Net's decoder blocks: upsample, concatenate the skip, two conv-BN-ReLU, optional scSE.

Kept apart from `blocks.py`, whose blocks mirror the Keras seed kernel stanza by stanza;
these follow the TGS winners' and smp's U-Net decoder instead (batch norm always, nearest
upsampling, no dropout).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBnReLU(nn.Sequential):
    """3x3 "same" convolution (no bias: batch norm follows), batch norm, ReLU: (B, Cin, H, W) -> (B, Cout, H, W)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class SCSE(nn.Module):
    """Concurrent spatial and channel squeeze & excitation (Roy et al. 2018): (B, C, H, W) -> (B, C, H, W).

    x * channel_gate(x) + x * spatial_gate(x): the channel gate is a bottleneck MLP (C -> C/16 -> C)
    on the global average, the spatial gate a 1x1 convolution to one map; both sigmoids.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.channel_gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                          nn.Conv2d(hidden, channels, 1), nn.Sigmoid())
        self.spatial_gate = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.channel_gate(x) + x * self.spatial_gate(x)


class DecoderBlock(nn.Module):
    """Upsample by `scale` (nearest), concatenate the skip, two ConvBnReLU, then scSE if asked.

    (B, Cin, H, W) + skip (B, Cskip, sH, sW) -> (B, Cout, sH, sW). `skip_channels=0`: no skip
    (the steps below the encoder's first feature map, e.g. stride 2 -> 1 for a ResNet).
    Nearest upsampling is smp's choice: the convolutions after it smooth, and it costs nothing.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, *, scale: int, scse: bool) -> None:
        super().__init__()
        self.scale = scale
        self.conv1 = ConvBnReLU(in_channels + skip_channels, out_channels)
        self.conv2 = ConvBnReLU(out_channels, out_channels)
        self.attention: nn.Module = SCSE(out_channels) if scse else nn.Identity()

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.scale > 1:
            x = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.attention(self.conv2(self.conv1(x)))
