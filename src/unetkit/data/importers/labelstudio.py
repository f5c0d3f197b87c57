"""Label Studio JSON export: tasks with `data.image` and `annotations[].result[]` of polygons and brushes.

Polygons (`polygonlabels`) give points in percent of `original_width` / `original_height`; rectangles
(`rectanglelabels`: x, y, width, height in percent, unrotated) are filled; brushes (`brushlabels`, format "rle") are
Label Studio's own run-length code of the (H, W, 4) RGBA brush layer, whose alpha is the mask. That code (rle-pack,
as label-studio-converter's brush.py reads it) is decoded here rather than by installing label-studio-converter,
which brings a web stack for one function: a 32-bit count of output values, a 5-bit word size - 1, four 4-bit
run-length sizes - 1, then runs: a flag bit, a 2-bit size selector and a length - 1; flagged runs repeat one word,
others list each word. The first annotation of a task is read (Label Studio lists the latest first); uploads named
`1a2b3c4d-name.png` are looked up as `name.png` when the prefixed name is not in DIR.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np

from unetkit.data.importers.shapes import ImageRecord, Shape, points_of
from unetkit.data.importers.writer import Problems
from unetkit.errors import UserError

UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")  # what Label Studio puts before an uploaded file's name
ALPHA_THRESHOLD = 127  # brush pixels with alpha above this are painted (the converter's 127.5)


def parse(data: Any, path: Path, problems: Problems, images_dir: Path) -> tuple[list[ImageRecord], list[str]]:
    """Label Studio JSON (a list of tasks) -> records; no declared labels."""
    if not isinstance(data, list) or any(not isinstance(task, dict) or "data" not in task for task in data):
        raise UserError(f"{path}: not a Label Studio JSON export (expected a list of tasks with 'data')")
    records = []
    for task in data:
        if (image := _image_value(task["data"])) is None:
            problems.add("tasks without an image", f"task {task.get('id')}")
            continue
        record = ImageRecord(_local_name(image, images_dir), where=f"task {task.get('id')}")
        annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        for number, result in enumerate(annotations[0].get("result", []) if annotations else []):
            if (shape := _shape(result, f"task {task.get('id')} result {number}", record, problems)) is not None:
                record.shapes.append(shape)
        records.append(record)
    return records, []


def _image_value(data: dict[str, Any]) -> str | None:
    value = data.get("image")
    return str(value) if value is not None else next((v for v in data.values() if isinstance(v, str) and "." in v), None)


def _local_name(url: str, images_dir: Path) -> str:
    """'/data/upload/3/1a2b3c4d-cat.png' -> 'cat.png' when only that exists in DIR; a relative path stays."""
    name = unquote(url.split("?d=")[-1])
    if "://" in name or name.startswith("/data/"):
        name = name.rsplit("/", 1)[-1]
    plain = UPLOAD_PREFIX.sub("", Path(name).name)
    return plain if not (images_dir / name).exists() and (images_dir / plain).exists() else name


def _shape(result: dict[str, Any], where: str, record: ImageRecord, problems: Problems) -> Shape | None:
    kind, value = result.get("type"), result.get("value") or {}
    width, height = result.get("original_width"), result.get("original_height")
    if not width or not height:
        return problems.add("results without original_width/original_height", where)
    record.width, record.height = int(width), int(height)
    label = str((value.get(kind) or value.get("labels") or [""])[0])
    if kind == "polygonlabels":
        points = points_of(value.get("points") or []) * [width / 100.0, height / 100.0]
        if len(points) < 3:
            return problems.add("polygons with fewer than 3 points", where)
        return Shape(label, [points])
    if kind == "rectanglelabels":
        x, y = value["x"] * width / 100.0, value["y"] * height / 100.0
        w, h = value["width"] * width / 100.0, value["height"] * height / 100.0
        return Shape(label, [points_of([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])])
    if kind == "brushlabels":
        return _brush(value, label, int(width), int(height), where, problems)
    return problems.add(f"'{kind}' results (not segmentation)", where)


def _brush(value: dict[str, Any], label: str, width: int, height: int, where: str, problems: Problems) -> Shape | None:
    if value.get("format") != "rle" or not isinstance(value.get("rle"), list):
        return problems.add("brushes not in rle format", where)
    try:
        decoded = decode_brush(value["rle"])
    except (ValueError, IndexError):
        return problems.add("brushes whose rle cannot be decoded", where)
    if decoded.size != width * height * 4:
        return problems.add("brushes whose rle does not match their image size", where)
    return Shape(label, bitmap=decoded.reshape(height, width, 4)[:, :, 3] > ALPHA_THRESHOLD)


def decode_brush(data: list[int]) -> np.ndarray:
    """Label Studio's brush rle (bytes as ints) -> the flat uint8 values it packs (H * W * 4 of them)."""
    bits = np.unpackbits(np.asarray(data, np.uint8))
    position = 0

    def read(n: int) -> int:
        nonlocal position
        position += n
        if position > len(bits):
            raise ValueError("rle ends early")
        return int(bits[position - n:position].dot(1 << np.arange(n - 1, -1, -1, dtype=np.int64)))

    count = read(32)
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(count, np.uint8)
    i = 0
    while i < count:
        repeated = read(1)
        end = min(count, i + 1 + read(sizes[read(2)]))
        out[i:end] = read(word) if repeated else [read(word) for _ in range(i, end)]
        i = end
    return out
