"""Reads done in background threads while the caller works on what was read before.

Decoders release the GIL (PIL's, NumPy's, tifffile's zlib and zarr's copies), so a few threads overlap reading with
the caller's work. Results reach the caller in a fixed order, so what it does with each (a seeded fingerprint, a
stack) is the same as a serial read's, and only a few wait, so memory stays that of a few files or bands. An error
while reading reaches the caller at its item, as the same exception a direct read would raise.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")
S = TypeVar("S")
Span = tuple[int, int]  # (y0, y1): rows y0 .. y1 - 1


def in_order(read: Callable[[S], T], items: Iterable[S], *, workers: int | None = None, ahead: int = 16) -> Iterator[T]:
    """`read(item)` for each item, by `workers` threads (default: the cores, at most 4), yielded in the items' order."""
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
    """The bands of rows of one streamed image, in an order known in advance (the tile rows of a grid): `read(y0, y1)`
    for each span of `spans`, by a thread at most `depth` + 1 spans ahead, while the network runs on the band before.
    Call it with those spans in that order, in a `with`: leaving it stops the thread and drops what it read ahead."""

    def __init__(self, read: Callable[[int, int], T], spans: Sequence[Span], depth: int = 1) -> None:
        self._spans, self._next = list(spans), 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="read-ahead")
        self._submit = lambda span: self._pool.submit(read, *span)
        self._ahead = deque(self._submit(span) for span in self._spans[: depth + 1])

    def __call__(self, y0: int, y1: int) -> T:
        """The band of rows y0 .. y1 - 1, as `read` returns it."""
        if self._next >= len(self._spans) or self._spans[self._next] != (y0, y1):
            expected = self._spans[self._next] if self._next < len(self._spans) else "none"
            raise ValueError(f"rows {y0}-{y1} asked out of order: the next span read ahead is {expected}")
        if self._next + len(self._ahead) < len(self._spans):
            self._ahead.append(self._submit(self._spans[self._next + len(self._ahead)]))
        self._next += 1
        return self._ahead.popleft().result()

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        """Stop the thread; what it read ahead and nobody asked for is dropped."""
        self._pool.shutdown(cancel_futures=True)
