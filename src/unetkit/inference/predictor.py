"""Applying a saved model to images of any size: whole, tiled, or streamed by rows.

An image no larger than the tile goes through the network whole, batched with neighbours of
the same size. A larger one is cut into overlapping tiles that are blended back
(inference/tiling.py); `stream` hands its rows on as they are finished, so the caller can
write them without ever holding the image's probabilities. Test-time augmentation wraps the
network in every path, so tiles and whole images are treated alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch

from unetkit.config import InferenceOptions
from unetkit.data.preprocess import resize_logits
from unetkit.errors import UserError
from unetkit.export.model_file import SavedModel
from unetkit.inference.postprocess import binary_decision
from unetkit.inference.tiling import TileGrid, assemble, blended_rows
from unetkit.inference.tta import averaged
from unetkit.runtime import resolve_device

Key = TypeVar("Key")


class Predictor:
    """Turns (H, W, C) images into probabilities (K, H, W) float32 and masks (H, W) uint8."""

    def __init__(self, saved: SavedModel, options: InferenceOptions | None = None, **fields: Any) -> None:
        """`options` (or its fields as keywords: device="cpu", tile=512, tta="flips", ...) say how."""
        options = dataclasses.replace(options, **fields) if options else InferenceOptions(**fields)
        self.saved = saved
        self.device = resolve_device(options.device)
        self.net = saved.net.to(self.device, memory_format=torch.channels_last).eval()
        if options.threshold is not None and not saved.config.sigmoid:
            raise UserError("a threshold applies to binary and multi-label models only; this model has "
                            f"{saved.config.num_classes} classes and predicts the most probable one")
        self.threshold = saved.threshold if saved.config.sigmoid and options.threshold is None else options.threshold
        self.batch_size = options.batch_size
        self.tile, self.overlap, self.blend, self.tta = options.tile, options.overlap, options.blend, options.tta
        self.autocast_dtype = self._autocast_dtype(options.precision)

    def _autocast_dtype(self, precision: str) -> torch.dtype | None:
        """auto: bf16 on CUDA GPUs that have it (Ampere and later), fp32 elsewhere. bf16 is opt-in on
        the CPU: about 1.9x faster where the CPU has AVX512-BF16 or AMX, but probabilities move by
        up to a few hundredths (benchmarks/inference.py measures both)."""
        if precision == "fp32":
            return None
        if self.device.type == "cuda":
            if torch.cuda.is_bf16_supported():
                return torch.bfloat16
            if precision == "bf16":
                raise UserError(f"precision bf16: this GPU ({torch.cuda.get_device_name(self.device)}) has no bf16")
            return None
        return torch.bfloat16 if precision == "bf16" else None

    @property
    def num_classes(self) -> int:
        return self.saved.config.num_classes

    @property
    def tiles_images(self) -> bool:
        """False for resize-policy models: they see every image whole, resized to their training size."""
        return self.saved.preprocess.size_policy == "pad"

    def needs_tiles(self, height: int, width: int) -> bool:
        return self.tiles_images and (height > self.tile or width > self.tile)

    @torch.inference_mode()
    def forward(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, C) raw images of one size -> (N, K, H, W) float32 probabilities on the device."""
        height, width = images.shape[1:3]
        x = self.saved.preprocess.to_tensor(images).to(self.device, non_blocking=True,
                                                       memory_format=torch.channels_last)
        return averaged(self._logits, x, self.tta, lambda logits: self._activate(logits, height, width))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            return self.net(x).float()

    def _activate(self, logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
        logits = resize_logits(logits, height, width)  # resize policy: back from resize_to x resize_to
        return torch.sigmoid(logits) if self.saved.config.sigmoid else torch.softmax(logits, dim=1)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, C) images of one size -> (N, K, H, W) float32 probabilities, tiled if large."""
        height, width = images.shape[1:3]
        if self.needs_tiles(height, width):
            return np.stack([self.tiled(image) for image in images])
        return self.forward(images).cpu().numpy()

    def stream(self, read_rows: Callable[[int, int], np.ndarray], height: int, width: int,
               on_tiles: Callable[[int], None] | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """Blended tiles of an image read by rows: yields (y0, (K, rows, W) probabilities) top to bottom."""
        grid = TileGrid.plan(height, width, self.tile, self.overlap)
        return blended_rows(read_rows, grid, self.forward, self.num_classes, batch_size=self.batch_size,
                            blend=self.blend, device=self.device, on_tiles=on_tiles)

    def tiled(self, image: np.ndarray, on_tiles: Callable[[int], None] | None = None) -> np.ndarray:
        """(H, W, C) image of any size -> (K, H, W) probabilities through overlapping tiles."""
        height, width = image.shape[:2]
        bands = self.stream(lambda y0, y1: image[y0:y1], height, width, on_tiles)
        return assemble(bands, self.num_classes, height, width)

    def tile_count(self, height: int, width: int) -> int:
        return TileGrid.plan(height, width, self.tile, self.overlap).n_tiles if self.needs_tiles(height, width) else 1

    def to_mask(self, probabilities: np.ndarray, *, postprocess: bool = True) -> np.ndarray:
        """(K, H, W) probabilities -> (H, W) uint8: 0/1 by threshold (binary) or argmax class index;
        multi-label: (K, H, W) uint8 0/1, one map per label. `postprocess` applies the stored
        min-area and empty-mask rules (binary); bands of a streamed image go without them."""
        if self.saved.config.multilabel:
            return (probabilities > self.threshold).astype(np.uint8)
        if self.num_classes == 1:
            rule = self.saved.postprocess if postprocess else {}
            pre = self.saved.preprocess
            if pre.size_policy == "resize" and rule:  # areas were tuned on resize_to x resize_to maps
                factor = probabilities.shape[1] * probabilities.shape[2] / pre.resize_to**2
                rule = {name: int(round(area * factor)) for name, area in rule.items()}
            return binary_decision(probabilities[0], self.threshold, **rule)
        return probabilities.argmax(0).astype(np.uint8)

    def run(self, items: Iterable[tuple[Key, np.ndarray]],
            on_tiles: Callable[[int], None] | None = None) -> Iterator[tuple[Key, np.ndarray, np.ndarray]]:
        """(key, image) in order -> (key, image, probabilities) in the same order.

        Consecutive images of one size no larger than the tile share batches; larger ones are tiled.
        """
        pending: list[tuple[Key, np.ndarray]] = []
        for key, image in items:
            if pending and (len(pending) == self.batch_size or image.shape != pending[0][1].shape
                            or image.dtype != pending[0][1].dtype):
                yield from self._flush(pending)
                pending = []
            if self.needs_tiles(*image.shape[:2]):
                yield key, image, self.tiled(image, on_tiles)
                continue
            pending.append((key, image))
        if pending:
            yield from self._flush(pending)

    def _flush(self, pending: list[tuple[Key, np.ndarray]]) -> Iterator[tuple[Key, np.ndarray, np.ndarray]]:
        probabilities = self.forward(np.stack([image for _, image in pending])).cpu().numpy()
        for (key, image), prob in zip(pending, probabilities):
            yield key, image, prob
