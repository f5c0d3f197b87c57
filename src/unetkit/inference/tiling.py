"""Overlap-tile prediction: tiles cut row by row, batched, blended with importance weights, and
handed on as finished bands of rows.

Written here rather than taken from MONAI (`sliding_window_inference`) or nnU-Net because both
hold a float output and a weight map as large as the whole image; a 20000 x 20000 slide then
needs 3 GB before the network runs. Here only the rows that a tile not yet run can still touch
stay open, so memory depends on the tile, the batch and the image width, never its height,
and the same engine serves in-memory images, memory-mapped arrays and tiled TIFFs.

The grid and the weights follow the convention MONAI and nnU-Net share, so results agree with
theirs: step int(tile * (1 - overlap)), the last tile flush with the border, Gaussian weights
with sigma = tile / 8 clamped below at 1e-3 of the peak (no pixel gets zero weight).

The engine works on whatever arrays the network returns: torch tensors (blended on the
network's device) or NumPy arrays (ONNX prediction, which never imports torch). The few
operations that differ between the two are the small helpers at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from unetkit.errors import UserError

SIGMA_SCALE = 0.125
MIN_WEIGHT = 1e-3
BLENDS = ("gaussian", "constant")  # weights of overlapping tiles (importance_map)

ReadRows = Callable[[int, int], np.ndarray]  # (y0, y1) -> (y1 - y0, W, C) raw pixels
PredictTiles = Callable[[np.ndarray], Any]  # (N, h, w, C) raw pixels -> (N, K, h, w) probabilities (tensor or array)


def axis_starts(size: int, tile: int, overlap: float) -> list[int]:
    """Tile offsets along one axis: every pixel covered, the last tile ending at the border."""
    if size <= tile:
        return [0]
    step = max(1, int(tile * (1 - overlap)))
    count = math.ceil((size - tile) / step) + 1
    return sorted({min(i * step, size - tile) for i in range(count)})


def importance_map(height: int, width: int, blend: str) -> np.ndarray:
    """(height, width) float32 weights of one tile's pixels: a centred Gaussian, or ones."""
    if blend == "constant":
        return np.ones((height, width), np.float32)
    if blend != "gaussian":
        raise UserError(f"config field 'blend': '{blend}' is not one of {', '.join(BLENDS)}")

    def bell(n: int) -> np.ndarray:
        x = np.arange(n, dtype=np.float32) - np.float32((n - 1) / 2)
        return np.exp(-(x**2) / np.float32(2 * (SIGMA_SCALE * n) ** 2))

    weights = bell(height)[:, None] * bell(width)[None, :]
    return np.maximum(weights, max(float(weights.min()), MIN_WEIGHT)).astype(np.float32)


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one image lie: all tiles have the same (tile_h, tile_w) shape."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @classmethod
    def plan(cls, height: int, width: int, tile: int, overlap: float) -> TileGrid:
        """Tiles of `tile` x `tile` (clipped to the image) overlapping by `overlap` of a tile."""
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must lie in [0, 1), not {overlap}")
        tile_h, tile_w = min(tile, height), min(tile, width)
        return cls(height, width, tile_h, tile_w, tuple(axis_starts(height, tile_h, overlap)),
                   tuple(axis_starts(width, tile_w, overlap)))

    @property
    def n_tiles(self) -> int:
        return len(self.ys) * len(self.xs)


def blended_rows(read_rows: ReadRows, grid: TileGrid, predict: PredictTiles, num_outputs: int, *,
                 batch_size: int, weights: Any,
                 on_tiles: Callable[[int], None] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (y0, probabilities (K, rows, W) float32 NumPy) for consecutive finished bands.

    `weights`: the tile's importance map (`importance_map`), as the same kind of array
    `predict` returns, on the same device. Tiles run in row-major batches (a batch may span
    tile rows). After each batch, the rows above the first tile not yet run are final: they
    are divided by their weight sum, yielded and dropped. Input rows are read once per tile row.
    """
    th, tw, width = grid.tile_h, grid.tile_w, grid.width
    tiles = [(y, x) for y in grid.ys for x in grid.xs]
    base = 0  # first row not yet yielded; the buffers hold rows base .. base + len
    total = _zeros_like(weights, (num_outputs, 0, width))
    weight_sum = _zeros_like(weights, (0, width))
    pending: list[np.ndarray] = []
    band_y, band = -1, np.empty(0)
    for index, (y, x) in enumerate(tiles):
        if y != band_y:
            band_y, band = y, read_rows(y, y + th)
        pending.append(band[:, x : x + tw])
        if len(pending) < batch_size and index + 1 < len(tiles):
            continue
        first = index + 1 - len(pending)
        probabilities = predict(np.stack(pending))
        pending = []
        rows_needed = tiles[index][0] + th - base
        if rows_needed > weight_sum.shape[0]:
            total = _grown(total, rows_needed, axis=1)
            weight_sum = _grown(weight_sum, rows_needed, axis=0)
        for (ty, tx), prob in zip(tiles[first : index + 1], probabilities):
            top = ty - base
            _add_weighted(total[:, top : top + th, tx : tx + tw], prob, weights)
            weight_sum[top : top + th, tx : tx + tw] += weights
        if on_tiles is not None:
            on_tiles(index + 1 - first)
        final = tiles[index + 1][0] if index + 1 < len(tiles) else grid.height
        if final > base:
            done = final - base
            yield base, host_array(total[:, :done] / weight_sum[:done])
            total, weight_sum = _copy(total[:, done:]), _copy(weight_sum[done:])
            base = final


def assemble(bands: Iterator[tuple[int, np.ndarray]], num_outputs: int, height: int, width: int) -> np.ndarray:
    """Collect finished bands into one (K, H, W) float32 array."""
    out = np.empty((num_outputs, height, width), dtype=np.float32)
    for y0, band in bands:
        out[:, y0 : y0 + band.shape[1]] = band
    return out


# What differs between torch tensors and NumPy arrays, told apart by their methods.

def _zeros_like(like: Any, shape: tuple[int, ...]) -> Any:
    return like.new_zeros(shape) if hasattr(like, "new_zeros") else np.zeros(shape, like.dtype)


def _grown(buffer: Any, rows: int, axis: int) -> Any:
    """`buffer` with zero rows appended along `axis` up to `rows`."""
    shape = list(buffer.shape)
    shape[axis] = rows
    grown = _zeros_like(buffer, tuple(shape))
    grown[(slice(None),) * axis + (slice(0, buffer.shape[axis]),)] = buffer
    return grown


def _add_weighted(target: Any, values: Any, weights: Any) -> None:
    if hasattr(target, "addcmul_"):
        target.addcmul_(values, weights)  # in place, no temporary tile
    else:
        target += values * weights


def _copy(view: Any) -> Any:
    return view.clone() if hasattr(view, "clone") else view.copy()


def host_array(array: Any) -> np.ndarray:
    """A NumPy array on the host, from a tensor on any device or an array."""
    return array.cpu().numpy() if hasattr(array, "cpu") else array
