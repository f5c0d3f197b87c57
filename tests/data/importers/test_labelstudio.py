"""Label Studio JSON: a polygon in percent and a brush in Label Studio's rle, exact pixel counts; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.data.importers.helpers import HEIGHT, WIDTH, counts, images, run
from unetkit.data.importers.labelstudio import decode_brush
from unetkit.errors import UserError


def encode_brush(values: np.ndarray) -> list[int]:
    """rle-pack of uint8 `values` with repeated runs only: 8-bit words, 16-bit run lengths (the test's encoder)."""
    bits = [format(len(values), "032b"), format(7, "05b"), format(15, "04b") * 4]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and values[end + 1] == values[start] and end + 1 - start < 65535:
            end += 1
        bits.append("1" + "00" + format(end - start, "016b") + format(int(values[start]), "08b"))
        start = end + 1
    text = "".join(bits)
    text += "0" * (-len(text) % 8)
    return [int(text[i:i + 8], 2) for i in range(0, len(text), 8)]


def brush_rle() -> list[int]:
    """The RGBA brush layer: rows 6 and 7 painted (alpha 255) except pixel (9, 7): 19 pixels."""
    layer = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    layer[6:, :, :] = 255
    layer[7, 9, 3] = 0
    return encode_brush(layer.reshape(-1))


def task(*results: dict[str, object], image: str = "/data/upload/1/1a2b3c4d-a.png") -> str:
    return json.dumps([{"id": 1, "data": {"image": image}, "annotations": [{"id": 5, "result": list(results)}]}])


def result(kind: str, value: dict[str, object]) -> dict[str, object]:
    return {"type": kind, "from_name": "tag", "to_name": "image", "original_width": WIDTH, "original_height": HEIGHT,
            "value": value}


SQUARE = result("polygonlabels", {"points": [[0, 0], [40, 0], [40, 50], [0, 50]], "polygonlabels": ["cat"]})
BRUSH = result("brushlabels", {"format": "rle", "rle": brush_rle(), "brushlabels": ["dog"]})


def test_brush_rle_round_trips() -> None:
    values = np.arange(300, dtype=np.uint8) // 7
    assert np.array_equal(decode_brush(encode_brush(values)), values)


def test_polygon_in_percent_and_brush(tmp_path: Path) -> None:
    """The upload prefix 1a2b3c4d- is dropped to find a.png; cat 4 x 4, dog 19."""
    (tmp_path / "ls.json").write_text(task(SQUARE, BRUSH))
    run("labelstudio", tmp_path / "ls.json", images(tmp_path / "img", "a.png"), tmp_path / "out")
    assert counts(tmp_path / "out", "a") == {0: 80 - 16 - 19, 1: 16, 2: 19}


@pytest.mark.parametrize("text,expected", [
    (task(SQUARE)[:30], "ls.json: not readable JSON"),
    (task(result("polygonlabels", {"points": [[0, 0], [40, 0]], "polygonlabels": ["cat"]})),
     "ls.json: nothing written; polygons with fewer than 3 points: 1 (task 1 result 0)"),
    (task(result("brushlabels", {"format": "rle", "rle": brush_rle()[:5], "brushlabels": ["dog"]})),
     "ls.json: nothing written; brushes whose rle cannot be decoded: 1"),
    (task(SQUARE, image="../a.png"), "ls.json: nothing written; image paths outside"),
    (task(SQUARE, BRUSH), "ls.json: nothing written; labels not in --classes: 1 ('dog' in a.png)"),
])
def test_bad_label_studio_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "ls.json").write_text(text)
    images(tmp_path, "a.png")
    with pytest.raises(UserError) as caught:
        run("labelstudio", tmp_path / "ls.json", images(tmp_path / "img", "a.png"), tmp_path / "out", classes=("cat",))
    assert str(caught.value).startswith(f"{tmp_path}/{expected}")
    assert not (tmp_path / "out").exists()
