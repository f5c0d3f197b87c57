"""What every annotation format is read into, and how shapes become a mask of class indices.

Each format module parses its file into `ImageRecord`s (an image's file name, its size if the file says, and its
shapes in the file's z-order); `render` paints them in that order onto a background of 0, so a later shape covers
an earlier one, and a shape labelled `background` (LabelMe's `_background_` too) paints 0: holes cut into it.

The pixel rule is the one COCO's rasteriser (pycocotools) follows, so all formats agree: a pixel (x, y) spans
[x, x + 1) x [y, y + 1), and belongs to a polygon when its centre (x + 0.5, y + 0.5) lies inside; to a polyline of
width w when its centre lies within w / 2 of it. Polygons are tested with matplotlib's `Path.contains_points` (a
dependency already) rather than pycocotools, which only COCO's optional extra installs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.errors import UserError

BACKGROUND_NAMES = ("background", "_background_")  # labels that paint class 0


@dataclass
class Shape:
    """One annotated object: polygon parts (each (n, 2) x, y in pixels), a polyline with a width, or a bitmap
    (H, W) bool from `offset` (x, y) on; `load` gives it when asked (one image decoded at a time, not the file's)."""

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
    """Shapes in z-order as (H, W) uint8 class indices; labels not in `index_of` (reported or refused by the caller) stay out."""
    mask = np.zeros((height, width), np.uint8)
    for shape in sorted((s for s in record.shapes if s.label in index_of), key=lambda s: s.z):  # stable: file order
        mask[_covered(shape, height, width)] = index_of[shape.label]
    return mask


def _covered(shape: Shape, height: int, width: int) -> np.ndarray:
    """(H, W) bool: the bitmap at its offset, or the pixels a polygon or polyline part covers (the module docstring's rule)."""
    from matplotlib.path import Path as PolygonPath  # here: the CLI lists the import formats without loading matplotlib

    out = np.zeros((height, width), bool)
    bitmap = shape.load() if shape.load is not None else shape.bitmap
    if bitmap is not None:
        x0, y0 = shape.offset
        crop = bitmap[: max(0, height - y0), : max(0, width - x0)]
        out[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
        return out
    radius = 0.0 if shape.width is None else shape.width / 2
    for points in shape.parts:
        lo = np.maximum(0, np.floor(points.min(axis=0) - radius).astype(int))
        hi = np.minimum((width, height), np.ceil(points.max(axis=0) + radius).astype(int) + 1)
        if (hi > lo).all():
            cy, cx = np.mgrid[lo[1]:hi[1], lo[0]:hi[0]] + 0.5  # pixel centres
            if shape.width is None:
                inside = PolygonPath(points).contains_points(np.column_stack([cx.ravel(), cy.ravel()])).reshape(cx.shape)
            else:
                inside = _near(points, radius, cx, cy)
            out[lo[1]:hi[1], lo[0]:hi[0]] |= inside
    return out


def _near(points: np.ndarray, radius: float, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """Whether each centre (cx, cy) lies within `radius` of the polyline `points` (n, 2)."""
    near = np.zeros(cx.shape, bool)
    for (ax, ay), (bx, by) in zip(points[:-1], points[1:]):
        dx, dy = bx - ax, by - ay
        length = dx * dx + dy * dy
        t = np.clip(((cx - ax) * dx + (cy - ay) * dy) / length, 0, 1) if length else np.zeros(cx.shape)
        near |= (cx - ax - t * dx) ** 2 + (cy - ay - t * dy) ** 2 <= radius * radius
    return near


def read_json(path: Path) -> Any:
    """One JSON file, with a one-line error naming it (truncated files included)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not readable JSON ({exc})") from None


def points_of(values: list[float] | list[list[float]]) -> np.ndarray:
    """(n, 2) float64 from [x, y, x, y, ...] or [[x, y], ...]."""
    return np.asarray(values, np.float64).reshape(-1, 2)
