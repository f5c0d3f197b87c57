"""LabelMe JSON: one file per image (or a folder of them) with `imagePath`, `imageHeight`, `imageWidth` and
`shapes` [{label, points, shape_type}].

polygon, rectangle (two corners), circle (centre, a point on the circle), line and linestrip (polylines of width 1)
and mask (a base64 PNG over the box points[0]..points[1]) are painted in file order; `point` shapes are no
segmentation and are refused (counted).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unetkit.data.importers.shapes import ImageRecord, Shape, points_of
from unetkit.data.importers.writer import Problems
from unetkit.errors import UserError

CIRCLE_SIDES = 64  # a circle is painted as a polygon of this many sides


def parse(files: list[tuple[Path, Any]], problems: Problems) -> tuple[list[ImageRecord], list[str]]:
    """(file, its JSON) of each image -> records; LabelMe declares no label list."""
    records = []
    for path, data in files:
        if not isinstance(data, dict) or "shapes" not in data or "imagePath" not in data:
            raise UserError(f"{path}: not LabelMe JSON (expected 'imagePath' and 'shapes')")
        name = str(data["imagePath"]).replace("\\", "/")
        width, height = data.get("imageWidth"), data.get("imageHeight")
        record = ImageRecord(name, int(width) if width else None, int(height) if height else None, where=path.name)
        for number, item in enumerate(data["shapes"]):
            if (shape := _shape(item, f"{path.name} shape {number} ('{item.get('label')}')", problems)) is not None:
                record.shapes.append(shape)
        records.append(record)
    return records, []


def _shape(item: dict[str, Any], where: str, problems: Problems) -> Shape | None:
    kind = item.get("shape_type") or "polygon"
    label = str(item.get("label", ""))
    try:
        points = points_of(item.get("points") or [])
    except ValueError:
        return problems.add("shapes with unreadable points", where)
    if (needed := {"polygon": 3, "rectangle": 2, "circle": 2, "line": 2, "linestrip": 2, "mask": 2}.get(kind)) is None:
        return problems.add(f"'{kind}' shapes (not segmentation)", where)
    if len(points) < needed:
        return problems.add(f"{kind}s with too few points", where)
    if kind == "rectangle":
        (x0, y0), (x1, y1) = points[:2]
        return Shape(label, [points_of([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])])
    if kind == "circle":
        radius = np.hypot(*(points[1] - points[0]))
        angles = np.linspace(0, 2 * np.pi, CIRCLE_SIDES, endpoint=False)
        return Shape(label, [points[0] + radius * np.column_stack([np.cos(angles), np.sin(angles)])])
    if kind in ("line", "linestrip"):
        return Shape(label, [points], width=1.0)
    if kind == "mask":
        try:
            bitmap = np.asarray(Image.open(io.BytesIO(base64.b64decode(item["mask"]))).convert("L")) > 0
        except (KeyError, ValueError, OSError):
            return problems.add("masks whose image cannot be decoded", where)
        return Shape(label, bitmap=bitmap, offset=(int(round(points[0][0])), int(round(points[0][1]))))
    return Shape(label, [points])
