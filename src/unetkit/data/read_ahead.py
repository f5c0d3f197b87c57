"""Reads done in background threads while the caller works on what was read before.

`in_order`: files decoded by a few threads (PIL's and NumPy's decoders release the GIL), handed to
the caller in their order, so what the caller does with each (a seeded fingerprint, a stack) is the
same as a serial read's; at most `ahead` results wait, so memory stays that of a few files.

`ReadAhead`: bands of rows of one image read in a background thread while the caller works on the band before.

A streamed image is read band by band in an order known in advance (the tile rows of a grid).
Decoding a band of a compressed TIFF (tifffile's zlib and zarr's copies) releases the GIL, so
one thread reading the next band while the network runs on this one takes the decoding off the
path the network waits on. The thread stays at most `depth` bands ahead of the caller, so
memory stays that of a few bands however tall the image; an error while reading reaches the
caller when it asks for that band, as the same exception a direct read would raise.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")
S = TypeVar("S")
Span = tuple[int, int]  # (y0, y1): rows y0 .. y1 - 1


def in_order(read: Callable[[S], T], items: Iterable[S], *, workers: int | None = None, ahead: int = 16) -> Iterator[T]:
    """`read(item)` for each item, by `workers` threads (default: the cores, at most 4), yielded in the items'
    order; an error reaches the caller at its item, as the same exception a serial read would raise there."""
    workers = workers or min(4, os.cpu_count() or 1)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="read")
    pending: deque[Future[T]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(read, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # also when the caller stops early: nothing more is read
        pool.shutdown(cancel_futures=True)


class ReadAhead(Generic[T]):
    """`read(y0, y1)` for each span of `spans` in turn, a thread ahead; call it with those spans in that order.

    Use as a context manager: leaving it (at the end, on an error, or when the caller stops early)
    stops the thread and drops what it read ahead."""

    def __init__(self, read: Callable[[int, int], T], spans: Sequence[Span], depth: int = 1) -> None:
        self._read = read
        self._spans = list(spans)
        self._next = 0
        self._queue: queue.Queue[tuple[T | None, BaseException | None]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="read-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for span in self._spans:
            try:
                item: tuple[T | None, BaseException | None] = (self._read(*span), None)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised where it asks for this band
                item = (None, exc)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self._stop.is_set() or item[1] is not None:
                return

    def __call__(self, y0: int, y1: int) -> T:
        """The band of rows y0 .. y1 - 1, as `read` returns it."""
        if self._next >= len(self._spans) or self._spans[self._next] != (y0, y1):
            expected = self._spans[self._next] if self._next < len(self._spans) else "none"
            raise ValueError(f"rows {y0}-{y1} asked out of order: the next span read ahead is {expected}")
        self._next += 1
        rows, error = self._queue.get()
        if error is not None:
            raise error
        return rows  # type: ignore[return-value]  # None only alongside an error

    def close(self) -> None:
        """Stop the thread; what it read ahead and nobody asked for is dropped."""
        self._stop.set()  # a put waiting on the full queue gives up within its timeout
        self._thread.join()

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
