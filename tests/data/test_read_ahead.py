from __future__ import annotations

import time

import numpy as np
import pytest

from unetkit.data.read_ahead import ReadAhead, in_order
from unetkit.errors import UserError

IMAGE = np.arange(100 * 7).reshape(100, 7)
SPANS = [(0, 32), (24, 56), (48, 80), (68, 100)]  # overlapping tile rows, as a tile grid asks for them


def test_bands_are_the_rows_read_directly_in_order() -> None:
    reads: list[tuple[int, int]] = []

    def read(y0: int, y1: int) -> np.ndarray:
        reads.append((y0, y1))
        return IMAGE[y0:y1].copy()

    with ReadAhead(read, SPANS) as rows:
        bands = [rows(y0, y1) for y0, y1 in SPANS]
    assert reads == SPANS  # each span read once, in order
    assert all(np.array_equal(band, IMAGE[y0:y1]) for band, (y0, y1) in zip(bands, SPANS))


def test_a_read_error_reaches_the_caller_at_its_band() -> None:
    def read(y0: int, y1: int) -> np.ndarray:
        if y0 == 48:
            raise UserError(f"big.tif: cannot read rows {y0}-{y1} (corrupt tile)")
        return IMAGE[y0:y1]

    with ReadAhead(read, SPANS) as rows:
        assert rows(0, 32).shape == (32, 7) and rows(24, 56).shape == (32, 7)
        with pytest.raises(UserError, match=r"^big.tif: cannot read rows 48-80 \(corrupt tile\)$"):
            rows(48, 80)


def test_rows_asked_out_of_order_are_refused() -> None:
    with ReadAhead(lambda y0, y1: IMAGE[y0:y1], SPANS) as rows, pytest.raises(ValueError, match="next span"):
        rows(24, 56)


def test_a_caller_that_stops_early_stops_the_reads() -> None:
    reads: list[int] = []
    spans = [(y, y + 1) for y in range(50)]
    with ReadAhead(lambda y0, y1: reads.append(y0) or IMAGE[y0:y1], spans, depth=1) as rows:
        rows(0, 1)
    assert not any(thread.is_alive() for thread in rows._pool._threads)
    assert len(reads) <= 3  # the band asked for, one in the queue, one read waiting for room: never the 50


def test_in_order_hands_back_reads_in_their_order_and_raises_at_the_failing_item() -> None:
    def read(i: int) -> int:
        time.sleep(0.002 * (i % 3))  # later items often finish first
        if i == 7:
            raise UserError(f"file {i}: unreadable")
        return i * i

    assert list(in_order(read, range(7), workers=3, ahead=2)) == [0, 1, 4, 9, 16, 25, 36]
    got: list[int] = []
    with pytest.raises(UserError, match="file 7: unreadable"):
        for value in in_order(read, range(12), workers=3):
            got.append(value)
    assert got == [i * i for i in range(7)]  # everything before the bad file, nothing after it
