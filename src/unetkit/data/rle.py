"""Run-length encoding of masks in the Kaggle format (TGS Salt, Carvana): the submission format
that competition tooling and many shared notebooks read.

Pixels are numbered from 1, top to bottom and then left to right (column-major), and a mask is written as "start
length start length ...", an empty mask as "". Written here because it is ten lines of NumPy and every package that
offers it pulls in a competition framework.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from unetkit.errors import UserError
from unetkit.fileio import write_text

RLE_COLUMNS = ("id", "rle_mask")


def rle_encode(mask: np.ndarray) -> str:
    """(H, W) mask, foreground where non-zero -> "start length ..." (1-indexed, column-major)."""
    if mask.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {mask.shape}")
    pixels = np.concatenate([[False], mask.T.reshape(-1) != 0, [False]])
    changes = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1
    changes[1::2] -= changes[::2]
    return " ".join(map(str, changes))


def rle_decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """"start length ..." -> (H, W) uint8 0/1 mask; refuses runs outside the image or out of order."""
    height, width = shape
    numbers = np.array(rle.split(), dtype=np.int64)
    if len(numbers) % 2:
        raise ValueError("run-length string has an odd count of numbers")
    starts, lengths = numbers[0::2] - 1, numbers[1::2]
    ends = starts + lengths
    if len(numbers) and (starts.min() < 0 or lengths.min() < 1 or ends.max() > height * width
                         or np.any(starts[1:] < ends[:-1])):
        raise ValueError(f"run-length string does not describe a {height}x{width} mask")
    flat = np.zeros(height * width + 1, dtype=np.int8)
    np.add.at(flat, starts, 1)
    np.add.at(flat, ends, -1)
    return np.cumsum(flat[:-1]).astype(np.uint8).reshape(width, height).T.copy()


def write_rle_csv(path: str | os.PathLike[str], rows: list[tuple[str, str]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([RLE_COLUMNS, *rows])
    write_text(path, buffer.getvalue())


def read_rle_csv(path: str | os.PathLike[str]) -> dict[str, str]:
    """{id: rle} from a CSV with columns id and rle_mask (a Kaggle submission or `predict --rle`)."""
    file = Path(path)
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not set(RLE_COLUMNS) <= set(reader.fieldnames):
                raise UserError(f"{file}: expected columns {', '.join(RLE_COLUMNS)}, found {reader.fieldnames}")
            return {row["id"]: row["rle_mask"] or "" for row in reader}
    except OSError as exc:
        raise UserError(f"{file}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:  # an image or another binary file given for the CSV
        reason = exc.reason if isinstance(exc, UnicodeDecodeError) else str(exc)[:200]
        raise UserError(f"{file}: not a run-length CSV (id,rle_mask) in UTF-8 text ({reason})") from None
