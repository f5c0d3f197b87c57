"""What happens to pixels between the file and the network, identically in training and inference.

A `Preprocess` is stored in every model file, so prediction scales, standardises and resizes exactly as training did,
without the user repeating any setting. torch is imported only by the functions that resize or build tensors: ONNX
prediction standardises with `to_array` and never imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from unetkit.data.io import dtype_range

if TYPE_CHECKING:
    import torch

MAX_RESIZE = 8192  # a side the resize policy may ask for; beyond it a model file is not believed


@dataclass(frozen=True)
class Preprocess:
    """Scaling to [0, 1] by bit depth, per-channel standardisation, and the size policy: "pad" sends images at
    their own size (the network pads to a multiple of 2**depth and crops back); "resize" resizes them to
    resize_to x resize_to and the probabilities back to the input's size."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    size_policy: str = "pad"
    resize_to: int = 128
    clip_low: tuple[float, ...] | None = None  # per channel, after scaling: values are clipped to [low, high]
    clip_high: tuple[float, ...] | None = None  # before standardising (the plan's clip_zscore, CT-like data)

    @classmethod
    def from_dict(cls, data: dict, in_channels: int | None = None) -> Preprocess:
        """The inverse of dataclasses.asdict (model files, ONNX metadata), checked as strictly as a config (a
        tampered file must not predict silently wrong masks): ValueError says what is wrong."""
        mean, std = tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"])
        if not all(math.isfinite(v) for v in mean + std) or min(std, default=0.0) <= 0:
            raise ValueError(f"preprocess mean {mean} and std {std} must be finite, std > 0")
        if in_channels is not None and not len(mean) == len(std) == in_channels:
            raise ValueError(f"preprocess has {len(mean)} means and {len(std)} stds for {in_channels} channel(s)")
        if data["size_policy"] not in ("pad", "resize"):
            raise ValueError(f"preprocess size_policy {data['size_policy']!r} is not pad or resize")
        resize_to = data["resize_to"]
        if not isinstance(resize_to, int) or isinstance(resize_to, bool) or not 1 <= resize_to <= MAX_RESIZE:
            raise ValueError(f"preprocess resize_to {resize_to!r} must be an integer in 1..{MAX_RESIZE}")
        clip = [data.get(key) for key in ("clip_low", "clip_high")]
        if any(bound is not None for bound in clip):
            low, high = (tuple(float(v) for v in bound or ()) for bound in clip)
            if not len(low) == len(high) == len(mean) or not all(math.isfinite(v) for v in low + high) or any(
                    a >= b for a, b in zip(low, high)):
                raise ValueError(f"preprocess clip_low {low} and clip_high {high} must be finite, low < high, one "
                                 "per channel")
            return cls(mean, std, data["size_policy"], resize_to, low, high)
        return cls(mean, std, data["size_policy"], resize_to)

    def to_tensor(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, C) array of any dtype -> standardised float32 tensor (N, C, H, W)."""
        import torch

        scale = dtype_range(images.dtype)
        x = torch.from_numpy(np.require(images, requirements="CW")).permute(0, 3, 1, 2)  # read-only rows: a copy
        return self.standardise(x.to(torch.float32) / scale if x.dtype != torch.float32 or scale != 1.0 else x)

    def standardise(self, x: torch.Tensor, mean: torch.Tensor | None = None, std: torch.Tensor | None = None) -> torch.Tensor:
        """`to_tensor` after the scaling, on x (B, C, H, W) float32 in [0, 1] on any device (the device batches of
        data/device_batches.py): the resize policy, the clipping, then (x - mean) / std, mean and std (1, C, 1, 1)
        on x's device (made on the CPU when not given)."""
        import torch
        import torch.nn.functional as F

        size = (self.resize_to, self.resize_to)
        if self.size_policy == "resize" and x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        if self.clip_low is not None and self.clip_high is not None:
            x = torch.minimum(torch.maximum(x, x.new_tensor(self.clip_low).view(1, -1, 1, 1)),
                              x.new_tensor(self.clip_high).view(1, -1, 1, 1))
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1) if mean is None else mean
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1) if std is None else std
        return (x - mean) / std

    def to_array(self, images: np.ndarray) -> np.ndarray:
        """`to_tensor` in NumPy, float32 (N, C, H, W), for the pad policy (what ONNX prediction uses)."""
        if self.size_policy != "pad":
            raise ValueError("to_array standardises only; resizing needs to_tensor")
        x = np.moveaxis(images, -1, 1).astype(np.float32) / np.float32(dtype_range(images.dtype))
        if self.clip_low is not None and self.clip_high is not None:
            x = np.clip(x, np.asarray(self.clip_low, np.float32).reshape(1, -1, 1, 1),
                        np.asarray(self.clip_high, np.float32).reshape(1, -1, 1, 1))
        mean = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
        return np.ascontiguousarray((x - mean) / std)


def identity_preprocess(channels: int, size_policy: str = "pad", resize_to: int = 128) -> Preprocess:
    """Scaling to [0, 1] only (mean 0, std 1)."""
    return Preprocess((0.0,) * channels, (1.0,) * channels, size_policy, resize_to)


def fit_preprocess(images: np.ndarray, *, normalize: bool, size_policy: str, resize_to: int,
                   clip: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> Preprocess:
    """Per-channel mean and std of training images (N, H, W, C) after scaling to [0, 1] and, with `clip`
    (low, high per channel, scaled units), clipping."""
    channels = images.shape[-1]
    if not normalize:
        return identity_preprocess(channels, size_policy, resize_to)
    scale = dtype_range(images.dtype)
    mean, sq = np.zeros(channels), np.zeros(channels)
    for start in range(0, len(images), 256):  # chunks: no float copy of the whole set
        chunk = images[start : start + 256].astype(np.float64) / scale
        if clip is not None:
            chunk = np.clip(chunk, np.asarray(clip[0]), np.asarray(clip[1]))
        mean += chunk.sum(axis=(0, 1, 2))
        sq += (chunk**2).sum(axis=(0, 1, 2))
    count = images.shape[0] * images.shape[1] * images.shape[2]
    mean /= count
    std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
    std = np.where(std < 1e-6, 1.0, std)  # a constant channel: centre it, don't blow it up
    low, high = (None, None) if clip is None else (tuple(float(v) for v in bound) for bound in clip)
    return Preprocess(tuple(float(m) for m in mean), tuple(float(s) for s in std), size_policy, resize_to, low, high)


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, C) of any dtype -> float32 (height, width, C) in [0, 1] (bilinear, antialiased)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(image.astype(np.float32) / dtype_range(image.dtype)).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x[0].permute(1, 2, 0).numpy()


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) class indices or (H, W, K) labels -> (height, width[, K]), nearest neighbour: no new values."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(mask)
    x = x.permute(2, 0, 1)[None] if x.dim() == 3 else x[None, None]
    resized = F.interpolate(x, size=(height, width), mode="nearest-exact")[0]
    return (resized.permute(1, 2, 0) if mask.ndim == 3 else resized[0]).numpy()


def resize_logits(logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, K, h, w) network output back to the input's (height, width)."""
    import torch.nn.functional as F

    if logits.shape[-2:] == (height, width):
        return logits
    return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
