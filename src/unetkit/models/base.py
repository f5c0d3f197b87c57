"""What every architecture is to the rest of unetkit: a `SegmentationNet`, (B, in_channels, H, W) of
any H, W -> logits (B, num_classes, H, W).

An architecture only writes `logits` for sides that are multiples of its `multiple`; the padding to
it and the crop back are written once here, so architectures, the ensemble, the tiler and the ONNX
export treat sizes alike. The config is the architecture as data: `build_model` rebuilds the net from it."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from unetkit.config import ModelConfig


class SegmentationNet(nn.Module):
    """Base of every architecture: (B, C, H, W) of any H, W -> logits (B, K, H, W). Subclasses set
    `self.config` and implement `multiple` and `logits`."""

    config: ModelConfig
    # The ModelConfig fields this architecture reads besides the common ones (registry.COMMON_OPTIONS);
    # any other is refused by name. None: not declared, nothing is checked.
    OPTIONS: ClassVar[frozenset[str] | None] = None

    @property
    @abstractmethod
    def multiple(self) -> int:
        """Height and width are padded to a multiple of this before `logits`."""

    @abstractmethod
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) with H, W multiples of `multiple` -> logits (B, K, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, crop = pad_to_multiple(x, self.multiple)
        return crop(self.logits(x))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """Pad (B, C, H, W) symmetrically to multiples of `multiple`; return it and the crop back to (H, W).
    Reflection keeps image statistics at the border (zeros would look like an edge); an image too
    small to reflect (e.g. 1xN) replicates its border."""
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    top, left = pad_h // 2, pad_w // 2
    if pad_h or pad_w:
        mode = "reflect" if max(top, pad_h - top) < height and max(left, pad_w - left) < width else "replicate"
        x = F.pad(x, (left, pad_w - left, top, pad_h - top), mode=mode)
    return x, lambda t: t[..., top : top + height, left : left + width]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
