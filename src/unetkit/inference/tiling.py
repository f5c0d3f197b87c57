"""Overlap-tile prediction: tiles cut row by row, batched, blended with importance weights, and handed on as finished
bands of rows.

Written here rather than taken from MONAI (`sliding_window_inference`) or nnU-Net because both hold a float output and
a weight map as large as the whole image (3 GB for a 20000 x 20000 slide); here only the rows a tile not yet run can
still touch stay open, so memory follows the tile, the batch and the image width, never its height. The grid and the
weights follow MONAI's and nnU-Net's convention, so results agree with theirs: step int(tile * (1 - overlap)), the
last tile flush with the border, Gaussian weights with sigma = tile / 8 clamped below at 1e-3 of the peak.

Arrays are torch tensors (blended on the network's device) or NumPy arrays (ONNX prediction, which never imports
torch); the small helpers at the end differ."""

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

ReadRows = Callable[[int, int], Any]  # (y0, y1) -> (C, y1 - y0, W) network-ready rows (tensor or array)
PredictTiles = Callable[[Any], Any]  # (N, C, h, w) network-ready tiles -> (N, K, h, w) probabilities, same kind


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

    `read_rows` gives network-ready rows (C, rows, W), standardised once per tile row; `weights` is the tile's
    importance map, the kind of array `predict` returns, on its device. Tiles run in row-major batches through one
    reused buffer and are added into the open rows in place (one fused multiply-add per tile); after each batch the
    rows above the first tile not yet run are final: divided by their weight sum, yielded and dropped. Every tile row
    has the same columns, so one row of weights summed over the columns (th, W) serves all of them."""
    th, tw, width = grid.tile_h, grid.tile_w, grid.width
    tiles = [(y, x) for y in grid.ys for x in grid.xs]
    batches = [(start, min(start + batch_size, len(tiles))) for start in range(0, len(tiles), batch_size)]
    open_rows = max(tiles[end - 1][0] - tiles[start][0] for start, end in batches) + th
    row_weights = _zeros_like(weights, (th, width))
    for x in grid.xs:
        row_weights[:, x : x + tw] += weights
    total, spare = (_zeros_like(weights, (num_outputs, open_rows, width)) for _ in range(2))
    base = 0  # first row not yet yielded; `total` holds rows base .. base + open_rows
    band_y, band, batch = -1, None, None
    for start, end in batches:
        for i, (y, x) in enumerate(tiles[start:end]):
            if y != band_y:
                band_y, band = y, read_rows(y, y + th)
            if batch is None:
                batch = _batch_buffer(band, batches[0][1], th, tw)
            batch[i] = band[:, :, x : x + tw]
        probabilities = predict(batch[: end - start])
        for (ty, tx), prob in zip(tiles[start:end], probabilities):
            _add_weighted(total[:, ty - base : ty - base + th, tx : tx + tw], prob, weights)
        if on_tiles is not None:
            on_tiles(end - start)
        final = tiles[end][0] if end < len(tiles) else grid.height
        if final > base:
            done = final - base
            yield base, host_array(total[:, :done] / _weight_sum(row_weights, grid.ys, base, final))
            spare[:, : open_rows - done] = total[:, done:]
            spare[:, open_rows - done :] = 0
            total, spare, base = spare, total, final


def _weight_sum(row_weights: Any, ys: tuple[int, ...], y0: int, y1: int) -> Any:
    """(y1 - y0, W) sum of the weights of every tile over rows y0 .. y1, from one tile row's weights."""
    th = row_weights.shape[0]
    out = _zeros_like(row_weights, (y1 - y0, row_weights.shape[1]))
    for y in ys:
        top, bottom = max(y, y0), min(y + th, y1)
        if top < bottom:
            out[top - y0 : bottom - y0] += row_weights[top - y : bottom - y]
    return out


def assemble(bands: Iterator[tuple[int, np.ndarray]], num_outputs: int, height: int, width: int) -> np.ndarray:
    """Collect finished bands into one (K, H, W) float32 array."""
    out = np.empty((num_outputs, height, width), dtype=np.float32)
    for y0, band in bands:
        out[:, y0 : y0 + band.shape[1]] = band
    return out


# What differs between torch tensors and NumPy arrays, told apart by their methods.

def _zeros_like(like: Any, shape: tuple[int, ...]) -> Any:
    return like.new_zeros(shape) if hasattr(like, "new_zeros") else np.zeros(shape, like.dtype)


def _batch_buffer(rows: Any, n: int, h: int, w: int) -> Any:
    """(n, C, h, w) uninitialised, like `rows` (C, H, W); channels-last for tensors, the memory
    format the PyTorch predictor runs its network in."""
    if hasattr(rows, "new_empty"):
        return rows.new_empty((n, h, w, rows.shape[0])).permute(0, 3, 1, 2)
    return np.empty((n, rows.shape[0], h, w), rows.dtype)


def _add_weighted(target: Any, values: Any, weights: Any) -> None:
    if hasattr(target, "addcmul_"):
        target.addcmul_(values, weights)  # in place, no temporary tile
    else:
        target += values * weights


def host_array(array: Any) -> np.ndarray:
    """A NumPy array on the host, from a tensor on any device or an array."""
    return array.cpu().numpy() if hasattr(array, "cpu") else array
