from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from unetkit.data.rle import read_rle_csv, rle_decode, rle_encode, write_rle_csv


@pytest.mark.parametrize("mask,expected", [
    # pixels numbered 1.. down the first column, then the next: column-major
    (np.array([[1, 0, 1], [1, 0, 0]]), "1 2 5 1"),
    (np.ones((2, 2)), "1 4"),
    (np.zeros((3, 4)), ""),
    (np.array([[0, 0], [0, 1]]), "4 1"),
    (np.array([[0, 1, 1, 1]]), "2 3"),  # one row: column-major and row-major agree
    (np.array([[1], [0], [1]]), "1 1 3 1"),
])
def test_hand_checked_cases(mask: np.ndarray, expected: str) -> None:
    assert rle_encode(mask) == expected
    assert np.array_equal(rle_decode(expected, mask.shape), (mask != 0).astype(np.uint8))


@settings(max_examples=200, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24)), elements=st.integers(0, 1)))
def test_round_trip_on_random_masks(mask: np.ndarray) -> None:
    rle = rle_encode(mask)
    numbers = [int(n) for n in rle.split()]
    assert sum(numbers[1::2]) == int(mask.sum())  # run lengths add up to the foreground area
    assert np.array_equal(rle_decode(rle, mask.shape), mask)


@pytest.mark.parametrize("rle", ["1", "0 2", "4 2", "1 2 2 1", "2 0"])
def test_malformed_strings_are_refused(rle: str) -> None:
    with pytest.raises(ValueError):
        rle_decode(rle, (2, 2))


def test_csv_round_trip(tmp_path: Path) -> None:
    rows = [("a", "1 2 5 1"), ("empty", "")]
    write_rle_csv(tmp_path / "sub.csv", rows)
    assert (tmp_path / "sub.csv").read_text().splitlines() == ["id,rle_mask", "a,1 2 5 1", "empty,"]
    assert read_rle_csv(tmp_path / "sub.csv") == dict(rows)
