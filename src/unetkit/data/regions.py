"""Images too large for memory, read one band of rows at a time.

TIFFs are opened through tifffile's zarr view, so a band reads and decodes only the tiles or strips it overlaps,
compressed or not, TIFF or BigTIFF; .npy arrays are memory-mapped. Other formats (PNG, JPEG) cannot be read
partially and are decoded whole. Float bands are checked for NaN and infinity as they are read, as `read_array`
checks whole images.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from unetkit.data.io import (
    TIFF_EXTENSIONS,
    channels_first,
    check_finite,
    check_regular_file,
    first_line,
    open_pillow,
    read_array,
    to_channels,
    upright_size,
)
from unetkit.errors import UserError

STREAMABLE_EXTENSIONS = (*TIFF_EXTENSIONS, ".npy")
LARGE_PIXELS = 2**22  # TIFF/.npy images above this (2048^2) are read by rows or regions, never decoded whole


@dataclass
class RowReader:
    """Rows of one image as (rows, W, channels) arrays in the file's dtype."""

    path: Path
    height: int
    width: int
    dtype: np.dtype
    channels: int
    _array: Any  # anything sliced as [y0:y1] -> (rows, W[, C]) or, planar, [:, y0:y1] -> (C, rows, W)
    _planar: bool = False

    def __call__(self, y0: int, y1: int) -> np.ndarray:
        return self.region(y0, y1, 0, self.width)

    def region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Rows y0:y1, columns x0:x1 as (y1 - y0, x1 - x0, channels): only the tiles or strips the
        window overlaps are decoded, so a training patch of a 20000-wide TIFF costs its own tiles."""
        where = f"rows {y0}-{y1}" + (f", columns {x0}-{x1}" if (x0, x1) != (0, self.width) else "")
        try:
            rows = np.asarray(self._array[:, y0:y1, x0:x1] if self._planar else self._array[y0:y1, x0:x1])
        except Exception as exc:  # noqa: BLE001 - a corrupt tile of a user's file is that file's problem
            raise UserError(f"{self.path}: cannot read {where} ({first_line(exc)})") from None
        rows = np.moveaxis(rows, 0, -1) if self._planar else rows
        check_finite(rows, self.path, f" in {where}")
        return to_channels(rows if rows.ndim == 3 else rows[:, :, None], self.channels, self.path)


def head_or_whole(path: Path) -> np.ndarray:
    """The image as stored (H, W, C), or for a TIFF/.npy over LARGE_PIXELS its first rows (LARGE_PIXELS of
    them at most): enough to see its channels and dtype without decoding gigabytes."""
    if can_stream(path):
        height, width = image_size(path)
        if height * width > LARGE_PIXELS:
            with open_rows(path, None) as reader:
                return reader(0, min(height, max(1, LARGE_PIXELS // width)))
    return read_array(path)


def can_stream(path: Path) -> bool:
    return path.suffix.lower() in STREAMABLE_EXTENSIONS


def is_large(path: Path) -> bool:
    """A TIFF or .npy over LARGE_PIXELS (known from its header): read by rows or regions, never decoded whole."""
    return can_stream(path) and math.prod(image_size(path)) > LARGE_PIXELS


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file's header, without decoding pixels."""
    suffix = path.suffix.lower()
    check_regular_file(path)
    try:
        if suffix in TIFF_EXTENSIONS:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                return _layout(series.shape, _tiff_planar(series.shape, series.axes))[:2]
        if suffix == ".npy":
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
            return _layout(shape, channels_first(shape))[:2] if len(shape) > 1 else (int(shape[0]), 0)
        with open_pillow(path) as image:
            return upright_size(image)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{path}: cannot read image ({first_line(exc)})") from None


def _tiff_planar(shape: tuple[int, ...], axes: str) -> bool:
    """Whether a TIFF series stores its samples before the rows, (C, Y, X); a ValueError when it is no 2-D image."""
    if len(shape) not in (2, 3):
        raise ValueError(f"expected a 2-D image, got axes {axes} of shape {shape}")
    return len(shape) == 3 and axes[-2:] == "YX"


def _layout(shape: tuple[int, ...], planar: bool) -> tuple[int, int, int]:
    """(height, width, channels) of an array stored (H, W[, C]), or (C, H, W) when `planar`."""
    return (shape[1], shape[2], shape[0]) if planar else (shape[0], shape[1], shape[2] if len(shape) == 3 else 1)


@contextlib.contextmanager
def open_rows(path: str | os.PathLike[str], channels: int | None) -> Iterator[RowReader]:
    """A RowReader for `path`, converting to `channels` like `to_channels` (one line on failure);
    `channels=None` keeps the channels the file stores (the data fingerprint counts them)."""
    file = Path(path)
    suffix = file.suffix.lower()
    check_regular_file(file)
    if suffix not in STREAMABLE_EXTENSIONS:
        image = read_array(file)
        yield RowReader(file, image.shape[0], image.shape[1], image.dtype, channels or image.shape[2], image)
        return
    with contextlib.ExitStack() as opened:
        try:
            if suffix == ".npy":
                array = np.load(file, mmap_mode="r", allow_pickle=False)
            else:
                tif = opened.enter_context(tifffile.TiffFile(file))
                axes, store = tif.series[0].axes, tif.aszarr(series=0, level=0)
                opened.callback(store.close)
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"{file}: cannot read {'array' if suffix == '.npy' else 'image'} ({first_line(exc)})") from None
        if suffix == ".npy":
            if array.ndim not in (2, 3) or array.dtype.names is not None or np.iscomplexobj(array):
                read_array(file)  # the one-line refusal of what it holds
                raise UserError(f"{file}: expected a 2-D image, got an array of shape {array.shape}")
            planar = channels_first(array.shape)
        else:
            import zarr  # imported here: only streamed TIFFs need it

            try:
                array = zarr.open(store, mode="r")
                planar = _tiff_planar(tuple(array.shape), axes)
            except ValueError as exc:
                raise UserError(f"{file}: {exc}") from None
        height, width, stored = _layout(tuple(array.shape), planar)
        yield RowReader(file, height, width, np.dtype(array.dtype), channels or stored, array, planar)
