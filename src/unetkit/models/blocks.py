"""The three building blocks of the U-Net: a double convolution, a down step, an up step.

Each mirrors one stanza of the Keras TGS kernel (`build_model`), so the assembly in
`unet.py` reads like the original listing.
"""

from __future__ import annotations

import torch
from torch import nn

UPSAMPLINGS = ("transpose", "bilinear")  # the kernel's 3x3 stride-2 transposed conv, or interpolation + conv


class DoubleConv(nn.Sequential):
    """Two 3x3 "same" convolutions with ReLU (optionally batch-normalised): (B, Cin, H, W) -> (B, Cout, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, *, batch_norm: bool = False) -> None:
        layers: list[nn.Module] = []
        for cin in (in_channels, out_channels):
            layers.append(nn.Conv2d(cin, out_channels, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Down(nn.Sequential):
    """2x2 max-pool then dropout, as the kernel does after each encoder level: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, dropout: float) -> None:
        super().__init__(nn.MaxPool2d(2), nn.Dropout(dropout))


class Up(nn.Module):
    """Upsample x2, concatenate the skip, dropout, double conv.

    (B, Cin, H, W) + skip (B, Cout, 2H, 2W) -> (B, Cout, 2H, 2W). "transpose" is the
    kernel's 3x3 stride-2 transposed convolution (Keras padding="same"); "bilinear" is
    interpolation followed by a 3x3 convolution, which avoids checkerboard artefacts.
    """

    def __init__(self, in_channels: int, out_channels: int, *, dropout: float, batch_norm: bool, mode: str) -> None:
        super().__init__()
        if mode == "transpose":
            self.upsample: nn.Module = nn.ConvTranspose2d(
                in_channels, out_channels, kernel_size=3, stride=2, padding=1, output_padding=1
            )
        else:
            self.upsample = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            )
        self.dropout = nn.Dropout(dropout)
        self.conv = DoubleConv(2 * out_channels, out_channels, batch_norm=batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(self.dropout(torch.cat([self.upsample(x), skip], dim=1)))
