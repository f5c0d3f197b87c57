"""Applying a saved model with PyTorch: on the GPU or CPU, channels-last, bf16 autocast where it
pays. Batching, tiling, streaming and masks are shared with ONNX prediction (inference/engine.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from unetkit.config import InferenceOptions
from unetkit.data.preprocess import resize_logits
from unetkit.errors import UserError
from unetkit.export.model_file import SavedModel
from unetkit.inference.chunking import CacheSizedPasses
from unetkit.inference.engine import PredictionEngine
from unetkit.inference.tta import averaged
from unetkit.outputs import as_logits, probabilities
from unetkit.runtime import has_bf16, resolve_device


class Predictor(PredictionEngine):
    """Turns (H, W, C) images into probabilities (K, H, W) float32 and masks (H, W) uint8 with PyTorch."""

    def __init__(self, saved: SavedModel, options: InferenceOptions | None = None, *,
                 torch_device: torch.device | None = None, **fields: Any) -> None:
        """`torch_device` places the network on that exact device (training validates on its own)."""
        super().__init__(saved, options, **fields)
        self.saved: SavedModel = saved
        self.device = torch_device or resolve_device(self.options.device)
        self.net = saved.net.to(self.device, memory_format=torch.channels_last).eval()
        self.passes = CacheSizedPasses(self.net)  # on a CPU, a batch runs in cache-sized passes
        self.autocast_dtype = self._autocast_dtype(self.options.precision)

    def _autocast_dtype(self, precision: str) -> torch.dtype | None:
        """auto: bf16 on CUDA GPUs that have it (Ampere and later), fp32 elsewhere. bf16 is opt-in on
        the CPU: faster where the CPU has AVX512-BF16 or AMX, but probabilities move by up to a few
        hundredths (benchmarks/inference.py measures both)."""
        cuda = self.device.type == "cuda"
        if cuda and precision == "bf16" and not has_bf16(self.device):
            raise UserError(f"precision bf16: this GPU ({torch.cuda.get_device_name(self.device)}) has no bf16")
        return torch.bfloat16 if precision == "bf16" or precision == "auto" and cuda and has_bf16(self.device) else None

    @torch.inference_mode()
    def prepare(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, C) raw images -> (N, C, h, w) standardised float32 on the device, channels-last."""
        return self.saved.preprocess.to_tensor(images).to(self.device, non_blocking=True,
                                                          memory_format=torch.channels_last)

    @torch.inference_mode()
    def network(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        height, width = size or x.shape[-2:]  # resize policy: back from resize_to x resize_to
        return averaged(self._logits, x, self.tta,
                        lambda logits: probabilities(resize_logits(logits, height, width), self.saved.config))

    @torch.inference_mode()
    def logits(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, C) raw images of one size -> (N, K, H, W) float32 logits on the device, at the images'
        size: what validation takes its loss on. `forward` is their activation; with TTA, whose views are
        averaged as probabilities, they are the logits of that average."""
        if self.tta != "none":
            return as_logits(self.forward(images), self.saved.config)
        return resize_logits(self._logits(self.prepare(images)), *images.shape[1:3])

    def tile_weights(self, height: int, width: int) -> torch.Tensor:
        return torch.from_numpy(super().tile_weights(height, width)).to(self.device)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            return self.passes(x).float()
