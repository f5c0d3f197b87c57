"""The networks' building blocks. DoubleConv, Down and Up each mirror one stanza of the Keras TGS kernel
(`build_model`), so `unet.py` reads like the original listing; ConvBnReLU, SCSE and DecoderBlock make the encoder
U-Net's decoder after the TGS winners' and smp's: batch norm always, nearest upsampling, no dropout."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

UPSAMPLINGS = ("transpose", "bilinear")  # the kernel's 3x3 stride-2 transposed conv, or interpolation + conv


class DoubleConv(nn.Sequential):
    """Two 3x3 "same" convolutions with ReLU (optionally batch-normalised): (B, Cin, H, W) -> (B, Cout, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, *, batch_norm: bool = False) -> None:
        layers: list[nn.Module] = []
        for cin in (in_channels, out_channels):
            layers += [nn.Conv2d(cin, out_channels, kernel_size=3, padding=1, bias=not batch_norm),
                       *([nn.BatchNorm2d(out_channels)] if batch_norm else []), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class Down(nn.Sequential):
    """2x2 max-pool then dropout, as the kernel does after each encoder level: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, dropout: float) -> None:
        super().__init__(nn.MaxPool2d(2), nn.Dropout(dropout))


class Up(nn.Module):
    """Upsample x2, concatenate the skip, dropout, double conv: (B, Cin, H, W) + skip (B, Cout, 2H, 2W)
    -> (B, Cout, 2H, 2W). "transpose" is the kernel's 3x3 stride-2 transposed convolution (Keras
    padding="same"); "bilinear", interpolation then a 3x3 convolution, avoids checkerboard artefacts."""

    def __init__(self, in_channels: int, out_channels: int, *, dropout: float, batch_norm: bool, mode: str) -> None:
        super().__init__()
        if mode == "transpose":
            self.upsample: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1,
                                                          output_padding=1)
        else:
            self.upsample = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            )
        self.dropout = nn.Dropout(dropout)
        self.conv = DoubleConv(2 * out_channels, out_channels, batch_norm=batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(self.dropout(torch.cat([self.upsample(x), skip], dim=1)))


class ConvBnReLU(nn.Sequential):
    """3x3 "same" convolution (no bias: batch norm follows), batch norm, ReLU: (B, Cin, H, W) -> (B, Cout, H, W)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class SCSE(nn.Module):
    """Concurrent spatial and channel squeeze & excitation (Roy et al. 2018): (B, C, H, W) -> (B, C, H, W),
    x * channel_gate(x) + x * spatial_gate(x): a bottleneck MLP (C -> C/16 -> C) on the global average,
    and a 1x1 convolution to one map; both sigmoids."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.channel_gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                          nn.Conv2d(hidden, channels, 1), nn.Sigmoid())
        self.spatial_gate = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.channel_gate(x) + x * self.spatial_gate(x)


class DecoderBlock(nn.Module):
    """Upsample by `scale` (nearest), concatenate the skip, two ConvBnReLU, then scSE if asked: (B, Cin, H, W) +
    skip (B, Cskip, sH, sW) -> (B, Cout, sH, sW); `skip_channels=0` below the encoder's first map (e.g. stride
    2 -> 1 for a ResNet). Nearest is smp's choice: the convolutions after it smooth, and it costs nothing."""

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
