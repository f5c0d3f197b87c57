"""Pascal VOC SegmentationClass: palette PNGs whose indices are the classes (255 = ignore, the object borders).

--annotations is the SegmentationClass folder (or a VOC root holding it); each PNG's image is the file of the same
stem in --images (JPEGImages). Class names are VOC's 21 in index order, or --classes naming the indices 1.. in order
(a subset of a VOC-style set: other indices are refused, or with --drop-unknown painted background).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unetkit.data.importers.shapes import ImageRecord
from unetkit.data.importers.writer import IGNORE_VALUE, Problems
from unetkit.data.io import IMAGE_EXTENSIONS, read_array
from unetkit.errors import UserError

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def parse(path: Path, images_dir: Path, names: tuple[str, ...], problems: Problems,
          drop: bool) -> tuple[list[ImageRecord], list[str]]:
    """A record per mask PNG (no shapes: the PNG is the mask), named after its image in DIR."""
    folder = path / "SegmentationClass" if (path / "SegmentationClass").is_dir() else path
    if not folder.is_dir():
        raise UserError(f"{path}: VOC import reads a SegmentationClass folder of PNGs (--annotations DIR)")
    classes = list(names or VOC_CLASSES)
    records = []
    for png in sorted(folder.glob("*.png")):
        image = next((images_dir / f"{png.stem}{ext}" for ext in (".jpg", *IMAGE_EXTENSIONS)
                      if (images_dir / f"{png.stem}{ext}").is_file()), None)
        records.append(ImageRecord(image.name if image else f"{png.stem}.jpg", where=png.name, source=png))
        for value in np.unique(read_array(png, palette_indices=True)[:, :, 0]).tolist():
            if not drop and value not in (0, IGNORE_VALUE) and value > len(classes):
                problems.add("mask indices beyond the classes", f"{value} in {png.name}")
    if not records:
        raise UserError(f"{folder}: no PNG masks found")
    return records, classes


def voc_mask(record: ImageRecord, index_of: dict[str, int], height: int, width: int, classes: list[str],
             drop: bool) -> np.ndarray:
    """The PNG's indices, with classes left out by --classes/--drop-unknown painted background."""
    png = record.source
    assert png is not None  # every VOC record has its PNG
    mask = read_array(png, palette_indices=True)[:, :, 0].astype(np.uint8)
    if mask.shape != (height, width):
        raise UserError(f"{png}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {record.name} is {width}x{height}")
    if drop:
        mask[(mask > len(classes)) & (mask != IGNORE_VALUE)] = 0
    return mask
