"""CVAT for images 1.1 XML: polygons, polylines (with a width), masks, boxes (filled rectangles).

`<image name width height>` holds `<polygon label points="x,y;x,y;..." z_order>`, `<polyline ...>` (its width, in
pixels, from an `<attribute name="width">`, else 1) and `<mask label rle left top width height z_order>`, whose
`rle` counts alternate background and foreground runs over its box, row by row. A `<box>` is a filled rectangle
(xtl, ytl to xbr, ybr); points, ellipses, skeletons and cuboids are refused (counted). Shapes are painted by
z_order, then in the file's order.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from unetkit.data.importers.shapes import ImageRecord, Shape, points_of
from unetkit.data.importers.writer import Problems
from unetkit.errors import UserError

WIDTH_ATTRIBUTES = ("width", "thickness", "line_width")  # attribute names read as a polyline's width
SKIPPED = ("points", "skeleton", "ellipse", "cuboid", "tag")


def parse(text: str, path: Path, problems: Problems) -> tuple[list[ImageRecord], list[str]]:
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise UserError(f"{path}: not valid XML ({exc})") from None
    if root.tag != "annotations":
        raise UserError(f"{path}: not CVAT for images XML (root <{root.tag}>, expected <annotations>)")
    declared = [label.findtext("name", "") for label in root.iter("label") if label.findtext("name")]
    records = []
    for image in root.iter("image"):
        try:
            record = ImageRecord(image.attrib["name"], int(image.attrib["width"]), int(image.attrib["height"]),
                                 where=f"image id {image.get('id')}")
        except (KeyError, ValueError) as exc:
            raise UserError(f"{path}: an <image> lacks {exc} (needs name, width, height)") from None
        for element in image:
            if (shape := _shape(element, record, problems)) is not None:
                shape.z = int(element.get("z_order", 0))
                record.shapes.append(shape)
        records.append(record)
    return records, declared


def _shape(element: ElementTree.Element, record: ImageRecord, problems: Problems) -> Shape | None:
    label = element.get("label", "")
    where = f"{record.name} <{element.tag} label='{label}'>"
    if element.tag in ("polygon", "polyline"):
        try:
            points = points_of([[float(v) for v in pair.split(",")] for pair in element.get("points", "").split(";")])
        except ValueError:
            return problems.add("shapes with unreadable points", where)
        if element.tag == "polygon" and len(points) < 3 or element.tag == "polyline" and len(points) < 2:
            return problems.add(f"{element.tag}s with too few points", where)
        return Shape(label, [points], width=_width(element) if element.tag == "polyline" else None)
    if element.tag == "mask":
        try:
            counts = [int(v) for v in element.get("rle", "").replace(" ", "").split(",") if v]
            left, top, width, height = (int(float(element.get(k, ""))) for k in ("left", "top", "width", "height"))
        except ValueError:
            return problems.add("masks with unreadable rle or box", where)
        if sum(counts) != width * height:
            return problems.add("masks whose rle does not fill their box", where)
        runs = np.repeat(np.arange(len(counts)) % 2, counts).astype(bool)
        return Shape(label, bitmap=runs.reshape(height, width), offset=(left, top))
    if element.tag == "box":
        try:
            x0, y0, x1, y1 = (float(element.get(k, "")) for k in ("xtl", "ytl", "xbr", "ybr"))
        except ValueError:
            return problems.add("boxes with unreadable corners", where)
        return Shape(label, [points_of([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])])
    if element.tag in SKIPPED:
        problems.add(f"<{element.tag}> shapes (not segmentation; delete or convert them in CVAT)", where)
    return None


def _width(element: ElementTree.Element) -> float:
    texts = [a.text for a in element.iter("attribute") if a.get("name", "").lower() in WIDTH_ATTRIBUTES]
    try:
        return max(1.0, float(texts[0] or 1)) if texts else 1.0
    except ValueError:
        return 1.0
