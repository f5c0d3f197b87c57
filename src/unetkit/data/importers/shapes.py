"""What every annotation format is read into, and how shapes become a mask of class indices.

Each format module parses its file into `ImageRecord`s (an image's file name, its size if the
file says, and its shapes in the file's z-order); `render` paints them in that order onto a
background of 0, so a later shape covers an earlier one, and a shape labelled `background`
(LabelMe's `_background_` too) paints 0: holes cut into what lies below.

The pixel rule is the one COCO's rasteriser (pycocotools) follows, so all formats agree: a
pixel (x, y) spans [x, x + 1) x [y, y + 1), and belongs to a polygon when its centre
(x + 0.5, y + 0.5) lies inside; to a polyline of width w when its centre lies within w / 2 of it.
Polygons are tested with matplotlib's `Path.contains_points` (a dependency already) rather
than pycocotools, which only COCO's optional extra installs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.path import Path as PolygonPath

from unetkit.errors import UserError

BACKGROUND_NAMES = ("background", "_background_")  # labels that paint class 0


@dataclass
class Shape:
    """One annotated object: polygon parts (each (n, 2) x, y in pixels), a polyline with a width, or a bitmap.

    `bitmap` is (H, W) bool over the whole image, or over `offset` (x, y) onwards when it is a crop;
    `load` gives it when asked (decoded one image at a time, not the whole file's at once).
    """

    label: str
    parts: list[np.ndarray] = field(default_factory=list)
    width: float | None = None  # a polyline's width in pixels; None for a polygon
    bitmap: np.ndarray | None = None
    load: Callable[[], np.ndarray] | None = None
    offset: tuple[int, int] = (0, 0)
    z: int = 0  # drawing order: higher on top; equal z keep the file's order


@dataclass
class ImageRecord:
    """One image of an annotation file: its name as the file gives it, size if given, shapes."""

    name: str
    width: int | None = None
    height: int | None = None
    shapes: list[Shape] = field(default_factory=list)
    where: str = ""  # how messages name it ("image 3", "task 12")
    source: Path | None = None  # a ready-made mask file (VOC) instead of shapes


def render(record: ImageRecord, index_of: dict[str, int], height: int, width: int) -> np.ndarray:
    """The record's shapes painted in z-order: (H, W) uint8 class indices (shapes whose label is not in
    `index_of` are left out: the caller has reported or refused them)."""
    mask = np.zeros((height, width), np.uint8)
    for shape in sorted(record.shapes, key=lambda s: s.z):  # sorted() is stable: file order among equals
        if shape.label not in index_of:
            continue
        mask[_covered(shape, height, width)] = index_of[shape.label]
    return mask


def _covered(shape: Shape, height: int, width: int) -> np.ndarray:
    bitmap = shape.load() if shape.load is not None else shape.bitmap
    if bitmap is not None:
        out = np.zeros((height, width), bool)
        x0, y0 = shape.offset
        crop = bitmap[: max(0, height - y0), : max(0, width - x0)]
        out[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
        return out
    out = np.zeros((height, width), bool)
    for part in shape.parts:
        if shape.width is None:
            out |= polygon_mask(part, height, width)
        else:
            out |= stroke_mask(part, shape.width, height, width)
    return out


def polygon_mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) bool: pixels whose centre lies inside the polygon `points` (n, 2) x, y."""
    out = np.zeros((height, width), bool)
    x0, y0, x1, y1 = _box(points, 0.0, height, width)
    if x1 <= x0 or y1 <= y0:
        return out
    ys, xs = np.mgrid[y0:y1, x0:x1]
    centres = np.column_stack([xs.ravel() + 0.5, ys.ravel() + 0.5])
    inside = PolygonPath(points).contains_points(centres)
    out[y0:y1, x0:x1] = inside.reshape(ys.shape)
    return out


def stroke_mask(points: np.ndarray, line_width: float, height: int, width: int) -> np.ndarray:
    """(H, W) bool: pixels whose centre lies within line_width / 2 of the polyline `points` (n, 2)."""
    out = np.zeros((height, width), bool)
    radius = line_width / 2
    x0, y0, x1, y1 = _box(points, radius, height, width)
    if x1 <= x0 or y1 <= y0:
        return out
    ys, xs = np.mgrid[y0:y1, x0:x1]
    cx, cy = xs + 0.5, ys + 0.5
    near = np.zeros(ys.shape, bool)
    for (ax, ay), (bx, by) in zip(points[:-1], points[1:]):
        dx, dy = bx - ax, by - ay
        length = dx * dx + dy * dy
        t = np.clip(((cx - ax) * dx + (cy - ay) * dy) / length, 0, 1) if length else np.zeros(ys.shape)
        near |= (cx - ax - t * dx) ** 2 + (cy - ay - t * dy) ** 2 <= radius * radius
    out[y0:y1, x0:x1] = near
    return out


def _box(points: np.ndarray, margin: float, height: int, width: int) -> tuple[int, int, int, int]:
    """Pixel bounds (x0, y0, x1, y1) of the points grown by `margin`, inside the image."""
    x0 = max(0, int(np.floor(points[:, 0].min() - margin)))
    y0 = max(0, int(np.floor(points[:, 1].min() - margin)))
    x1 = min(width, int(np.ceil(points[:, 0].max() + margin)) + 1)
    y1 = min(height, int(np.ceil(points[:, 1].max() + margin)) + 1)
    return x0, y0, x1, y1


def read_json(path: Path) -> Any:
    """One JSON file, with a one-line error naming it (truncated files included)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not readable JSON ({exc})") from None


def points_of(values: list[float] | list[list[float]]) -> np.ndarray:
    """(n, 2) float64 from [x, y, x, y, ...] or [[x, y], ...]."""
    return np.asarray(values, np.float64).reshape(-1, 2)
