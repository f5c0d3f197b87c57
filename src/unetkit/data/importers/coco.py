"""COCO instances JSON (polygons, RLE) and COCO panoptic JSON (+ its PNG folder), via pycocotools.

Instances: `images` [{id, file_name, width, height}], `categories` [{id, name}], `annotations` [{image_id,
category_id, segmentation}] where a segmentation is a list of polygons [x, y, ...] (the parts of one object, united)
or an RLE {size: [h, w], counts: [...] | "..."}. COCO has no z-order: annotations are painted in file order, later
on top. Panoptic: `annotations` [{image_id, file_name, segments_info: [{id, category_id}]}] with the segment ids
stored as R + 256 G + 256^2 B in FILE's sibling folder of the same stem (COCO's own layout).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.data.importers.shapes import ImageRecord, Shape
from unetkit.data.importers.writer import Problems
from unetkit.data.io import read_array
from unetkit.errors import UserError


def parse(data: Any, path: Path, problems: Problems) -> tuple[list[ImageRecord], list[str]]:
    """COCO JSON -> records (shapes as bitmaps decoded by pycocotools) and the declared category names."""
    if not isinstance(data, dict) or not all(isinstance(data.get(key), list) for key in ("images", "categories")):
        raise UserError(f"{path}: not COCO JSON (expected 'images', 'categories' and 'annotations' lists)")
    try:
        names = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        records = {int(i["id"]): ImageRecord(str(i["file_name"]), int(i["width"]), int(i["height"]),
                                             where=f"image id {i['id']}") for i in data["images"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: an image or category lacks {exc} "
                        "(COCO needs id, file_name, width, height; id, name)") from None
    annotations = data.get("annotations") or []
    if annotations and "segments_info" in annotations[0]:
        _panoptic(annotations, names, records, path, problems)
    else:
        for number, annotation in enumerate(annotations):
            _instance(annotation, number, names, records, problems)
    return list(records.values()), list(names.values())


def _instance(annotation: dict[str, Any], number: int, names: dict[int, str], records: dict[int, ImageRecord],
              problems: Problems) -> None:
    if (record := records.get(annotation.get("image_id"))) is None:  # type: ignore[arg-type]
        return problems.add("annotations of unknown image ids", f"annotation {annotation.get('id', number)}")
    if (label := names.get(annotation.get("category_id"))) is None:  # type: ignore[arg-type]
        return problems.add("unknown category ids", f"{annotation.get('category_id')} in {record.name}")
    where = f"{record.name} annotation {annotation.get('id', number)}"
    try:
        from pycocotools import mask as api
    except ImportError:
        raise UserError("COCO import needs pycocotools: pip install 'unetkit[import]'") from None
    height, width = record.height or 0, record.width or 0
    if isinstance(segmentation := annotation.get("segmentation"), list):
        parts = [part for part in segmentation if isinstance(part, list)]
        if not parts or any(len(part) < 6 or len(part) % 2 for part in parts):
            return problems.add("polygons with fewer than 3 points", where)
        rle = api.merge(api.frPyObjects(parts, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation:
        if list(segmentation.get("size", [])) != [height, width]:
            return problems.add("RLE sizes that differ from their image's", where)
        rle = api.frPyObjects(segmentation, height, width) if isinstance(segmentation["counts"], list) else segmentation
    else:
        return problems.add("annotations without a segmentation", where)
    record.shapes.append(Shape(label, load=lambda: _decode(api, rle)))


def _decode(api: Any, rle: Any) -> np.ndarray:
    """pycocotools' decode as (H, W) bool, without its NumPy 2 copy-keyword deprecation warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return api.decode(rle).astype(bool)


def _panoptic(annotations: list[dict[str, Any]], names: dict[int, str], records: dict[int, ImageRecord], path: Path,
              problems: Problems) -> None:
    folder = path.with_suffix("")
    if not folder.is_dir():
        raise UserError(f"{path}: panoptic JSON needs its PNG folder {folder} (COCO's layout)")
    for annotation in annotations:
        if (record := records.get(annotation.get("image_id"))) is None:  # type: ignore[arg-type]
            problems.add("annotations of unknown image ids", str(annotation.get("file_name")))
        elif not (png := folder / str(annotation["file_name"])).is_file():
            problems.add(f"panoptic PNGs not found in {folder}", png.name)
        else:
            for segment in annotation.get("segments_info", []):
                if (label := names.get(segment.get("category_id"))) is None:
                    problems.add("unknown category ids", f"{segment.get('category_id')} in {png.name}")
                else:
                    record.shapes.append(Shape(label, load=functools.partial(_segment, png, int(segment["id"]))))


def _segment(png: Path, segment_id: int) -> np.ndarray:
    """One panoptic segment's pixels: (H, W) bool where the PNG's R + 256 G + 256^2 B is its id."""
    return read_array(png).astype(np.int64)[:, :, :3] @ np.array([1, 256, 65536]) == segment_id
