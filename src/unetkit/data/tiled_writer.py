"""Writing an image too large for memory as a tiled, compressed TIFF, band of rows by band.

tifffile writes tiles pulled from an iterator; prediction pushes bands of rows as they are finished. A writer thread
turns one into the other through a short queue, so at most a row of TIFF tiles and two bands are held, and the
compression (and `convert`, e.g. the mask decision) overlaps the next tiles' network pass. Every tile handed to tifffile
is its own array: tifffile may read tiles ahead and hold them while compressing, so a view of the reused staging rows
would be overwritten before it is written. The file appears under its final name only when complete (atomic rename); an
error or an interruption on either side removes the temporary file.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import numpy as np
import tifffile

from unetkit.fileio import atomic_path

TIFF_TILE = 256
_BIGTIFF_BYTES = 2**31  # classic TIFF offsets are 32-bit; stay well clear of them
_DONE, _ABORT = object(), object()


class TiledTiffWriter:
    """Feed (rows, width[, samples]) bands top to bottom with `write`; `close` finishes the file. `convert`, if
    given, turns each band (rows, ...) into (rows, width[, samples]) in the writer thread: the band is then
    handed over as it is, and must not change after `write`."""

    def __init__(self, path: str | os.PathLike[str], height: int, width: int, dtype: np.dtype | type,
                 samples: int = 1, convert: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.path, self.convert, self.dtype, self.rows_written = Path(path), convert, np.dtype(dtype), 0
        self.height, self.width, self.samples = height, width, samples
        self._queue: queue.Queue[object] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"tiff-writer-{self.path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        shape = (self.height, self.width) + ((self.samples,) if self.samples > 1 else ())
        big = self.height * self.width * self.samples * self.dtype.itemsize > _BIGTIFF_BYTES
        try:
            with atomic_path(self.path) as tmp:
                tifffile.imwrite(tmp, self._tiles(), shape=shape, dtype=self.dtype, tile=(TIFF_TILE, TIFF_TILE),
                                 compression="zlib", bigtiff=big, photometric="minisblack",
                                 planarconfig="contig" if self.samples > 1 else None)
        except BaseException as exc:  # noqa: BLE001 - handed to the producing thread in close()
            self._error = exc
            with contextlib.suppress(queue.Empty):  # unblock a producer waiting on a full queue
                while True:
                    self._queue.get_nowait()

    def _tiles(self) -> Iterator[np.ndarray]:
        columns = math.ceil(self.width / TIFF_TILE)
        staging = np.zeros((TIFF_TILE, columns * TIFF_TILE, self.samples), dtype=self.dtype)
        filled = 0
        while True:
            item = self._queue.get()
            if item is _ABORT:
                raise InterruptedError(f"{self.path}: writing aborted")  # unwinds tifffile; the temporary file goes
            if item is _DONE:
                break
            band = np.asarray(self.convert(item) if self.convert else item).reshape(-1, self.width, self.samples)
            while len(band):
                take = min(TIFF_TILE - filled, len(band))
                staging[filled : filled + take, : self.width] = band[:take]
                filled, band = filled + take, band[take:]
                if filled == TIFF_TILE:
                    yield from self._row_of_tiles(staging, columns)
                    filled = 0
        if filled:
            staging[filled:] = 0
            yield from self._row_of_tiles(staging, columns)

    def _row_of_tiles(self, staging: np.ndarray, columns: int) -> Iterator[np.ndarray]:
        """Copies of the staging rows' tiles, (TIFF_TILE, TIFF_TILE[, samples]): staging is refilled next."""
        for column in range(columns):
            tile = staging[:, column * TIFF_TILE : (column + 1) * TIFF_TILE]
            yield (tile if self.samples > 1 else tile[:, :, 0]).copy()

    def _put(self, item: object) -> None:
        while self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                return self._queue.put(item, timeout=0.5)

    def write(self, band: np.ndarray) -> None:
        """Append the next rows: (rows, width) or (rows, width, samples), cast to the file's dtype (with
        `convert`: (rows, ...), what it converts). Raises the writer's error once it has failed."""
        if self._error is not None:
            raise self._error
        if band.shape[0] + self.rows_written > self.height:
            raise ValueError(f"{self.path}: {band.shape[0] + self.rows_written} rows written, image has {self.height}")
        self.rows_written += band.shape[0]
        self._put(band if self.convert else np.ascontiguousarray(band, dtype=self.dtype))

    def close(self) -> None:
        """Wait for the file to be complete and in place; re-raise the writer's error if any."""
        if self.rows_written != self.height and self._error is None:
            self.abort()
            raise ValueError(f"{self.path}: {self.rows_written} of {self.height} rows written")
        self._put(_DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Give up: the temporary file is removed and nothing appears under the final name."""
        self._put(_ABORT)
        self._thread.join()

    def __enter__(self) -> TiledTiffWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
