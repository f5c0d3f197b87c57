"""What every way of running a model shares: batching images of one size, tiling large ones (inference/tiling.py),
streaming rows, TTA, thresholds and masks; subclasses only say how a batch goes through the network (`Predictor`:
PyTorch, `OnnxPredictor`: onnxruntime). `stream` hands rows on as they are finished, so the caller can write them
without ever holding the image's probabilities. No torch here, so ONNX prediction runs where PyTorch is not installed."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

import numpy as np

from unetkit.config import InferenceOptions, ModelConfig
from unetkit.data.augment import augment_config
from unetkit.data.io import check_finite
from unetkit.data.preprocess import Preprocess
from unetkit.data.read_ahead import ReadAhead
from unetkit.errors import UserError
from unetkit.inference.postprocess import binary_decision
from unetkit.inference.tiling import TileGrid, assemble, blended_rows, host_array, importance_map
from unetkit.inference.tta import symmetries, unseen_views, widest_seen
from unetkit.outputs import hard_mask, is_binary, uses_sigmoid
from unetkit.runtime import log

Key = TypeVar("Key")
DEFAULT_TILE = 256  # tile side for models whose training made no plan (whole images)


class AppliedModel(Protocol):
    """What prediction needs to know of a model file (a SavedModel, or an exported ONNX model)."""

    @property
    def config(self) -> ModelConfig: ...

    preprocess: Preprocess
    threshold: float
    postprocess: dict[str, int]
    training: dict[str, Any]

    @property
    def classes(self) -> list[dict[str, Any]]: ...


def planned_tile(training: dict[str, Any]) -> int:
    """The tile a model's training plan chose for it (its patch size, for patch training), else DEFAULT_TILE:
    the context the network learned is the context it should predict in."""
    tile = (training.get("plan") or {}).get("predict_tile") if isinstance(training, dict) else None
    return tile if isinstance(tile, int) and not isinstance(tile, bool) and tile >= 16 else DEFAULT_TILE


def warn_unseen_views(tta: str, training: dict[str, Any]) -> None:
    """One log line when test-time augmentation averages views the model was never trained on (none when
    the file does not say which mirrorings and quarter turns its training augmentation drew)."""
    data = ((training.get("config") or {}).get("data") or {}) if isinstance(training, dict) else {}
    if not isinstance(data, dict) or not isinstance(data.get("augment"), str):
        return
    try:
        augment = augment_config(data["augment"], data.get("augment_params"))
    except UserError:
        return
    views = {name: bool(augment and getattr(augment, f"p_{name}")) for name in ("hflip", "vflip", "rotate90")}
    if unseen := unseen_views(tta, **views):
        drawn = [name for name, on in zip(("left-right flips", "up-down flips", "quarter turns"), views.values()) if on]
        log.warning("TTA '%s' averages %d view(s) the model never saw in training (its augmentation drew %s) and "
                    "can lower the masks' quality; '%s' keeps to the views it saw", tta, unseen,
                    " and ".join(drawn) or "no mirrorings or turns", widest_seen(**views))


class PredictionEngine(ABC):
    """Turns (H, W, C) images into probabilities (K, H, W) float32 and masks (H, W) uint8."""

    def __init__(self, saved: AppliedModel, options: InferenceOptions | None = None, **fields: Any) -> None:
        """`options` (or its fields as keywords: device="cpu", tile=512, tta="flips", ...) say how."""
        options = dataclasses.replace(options, **fields) if options else InferenceOptions(**fields)
        self.saved, self.options = saved, options
        if options.threshold is not None and not uses_sigmoid(saved.config):
            raise UserError("a threshold applies to binary and multi-label models only; this model has "
                            f"{saved.config.num_classes} classes and predicts the most probable one")
        self.threshold = saved.threshold if uses_sigmoid(saved.config) and options.threshold is None else options.threshold
        self.batch_size, self.tile = options.batch_size, options.tile or planned_tile(saved.training)
        self.overlap, self.blend, self.tta = options.overlap, options.blend, options.tta
        importance_map(1, 1, self.blend)  # unknown blend or TTA names: one line now, not at the first tile
        symmetries(self.tta)
        warn_unseen_views(self.tta, saved.training)

    @abstractmethod
    def prepare(self, images: np.ndarray) -> Any:
        """(N, H, W, C) raw images of one size -> (N, C, H, W) float32 network input (scaled, clipped,
        standardised, resized for the resize policy), as the network's array type on its device."""

    @abstractmethod
    def network(self, x: Any, size: tuple[int, int] | None = None) -> Any:
        """(N, C, h, w) network input from `prepare` -> (N, K, H, W) float32 probabilities (test-time augmentation
        included), as the network's array type; (H, W) is `size` where `prepare` resized the images, else x's own."""

    def forward(self, images: np.ndarray) -> Any:
        """(N, H, W, C) raw images of one size -> (N, K, H, W) float32 probabilities, as the network's
        array type (a tensor on the device, or a NumPy array)."""
        return self.network(self.prepare(images), images.shape[1:3])

    def tile_weights(self, height: int, width: int) -> Any:
        """The blending weights of one tile, as the same kind of array `forward` returns."""
        return importance_map(height, width, self.blend)

    @property
    def num_classes(self) -> int:
        return self.saved.config.num_classes

    @property
    def tiles_images(self) -> bool:
        """False for resize-policy models: they see every image whole, resized to their training size."""
        return self.saved.preprocess.size_policy == "pad"

    def needs_tiles(self, height: int, width: int) -> bool:
        return self.tiles_images and (height > self.tile or width > self.tile)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, C) images of one size -> (N, K, H, W) float32 probabilities, tiled if large."""
        check_finite(images.reshape(-1, *images.shape[2:]), "images")  # (N * H, W, C): a pixel counts once
        if self.needs_tiles(*images.shape[1:3]):
            return np.stack([self.tiled(image) for image in images])
        return host_array(self.forward(images))

    def stream(self, read_rows: Callable[[int, int], np.ndarray], height: int, width: int,
               on_tiles: Callable[[int], None] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Blended tiles of an image read by rows: yields (y0, (K, rows, W) probabilities) top to bottom,
        each band its own array: a caller may hand it to another thread and keep it while the next is made.
        Each tile row is prepared (standardised) once, then cut into tiles; the next one is read (decoded,
        for a file) in a background thread while the network runs on this one."""
        grid = TileGrid.plan(height, width, self.tile, self.overlap)
        with ReadAhead(read_rows, [(y, y + grid.tile_h) for y in grid.ys]) as rows:
            yield from blended_rows(lambda y0, y1: self.prepare(rows(y0, y1)[None])[0], grid, self.network,
                                    self.num_classes, batch_size=self.batch_size,
                                    weights=self.tile_weights(grid.tile_h, grid.tile_w), on_tiles=on_tiles)

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
        if is_binary(self.saved.config):
            rule = self.saved.postprocess if postprocess else {}
            if self.saved.preprocess.size_policy == "resize" and rule:  # areas were tuned on resize_to x resize_to maps
                factor = probabilities[0].size / self.saved.preprocess.resize_to**2
                rule = {name: int(round(area * factor)) for name, area in rule.items()}
            return binary_decision(probabilities[0], self.threshold, **rule)
        return hard_mask(probabilities[None], self.saved.config, self.threshold or 0.5)[0]

    def run(self, items: Iterable[tuple[Key, np.ndarray]],
            on_tiles: Callable[[int], None] | None = None) -> Iterator[tuple[Key, np.ndarray, np.ndarray]]:
        """(key, image) in order -> (key, image, probabilities) in the same order. Consecutive images of one
        size no larger than the tile share batches; larger ones are tiled."""
        pending: list[tuple[Key, np.ndarray]] = []
        for key, image in items:
            check_finite(image, getattr(key, "path", f"images[{key}]"))  # the rule image files keep (data/io.py)
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
        probabilities = host_array(self.forward(np.stack([image for _, image in pending])))
        for (key, image), prob in zip(pending, probabilities):
            yield key, image, prob
