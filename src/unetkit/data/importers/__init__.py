"""`unetkit import`: annotation-tool exports in, a labelled folder out (images/, masks/, classes.yaml).

One module per format parses its file into records of shapes (shapes.py); writer.py checks them all, then writes the
folder that `unetkit train --data OUT` reads. Formats: coco (instances and panoptic JSON), cvat (CVAT for images 1.1
XML), labelme (JSON, a file or a folder), labelstudio (JSON export), voc (SegmentationClass PNGs).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from unetkit.config import ImportConfig
from unetkit.data.importers import coco, cvat, labelme, labelstudio, voc
from unetkit.data.importers.shapes import BACKGROUND_NAMES, read_json, render
from unetkit.data.importers.writer import ImportResult, Problems, check_records, class_order, write_dataset
from unetkit.errors import UserError

log = logging.getLogger("unetkit")

FORMATS = ("coco", "cvat", "labelme", "labelstudio", "voc")


def import_annotations(config: ImportConfig) -> ImportResult:
    """Read config.annotations in config.format, check everything, write config.out_dir (see the module docstring)."""
    if config.format not in FORMATS:
        raise UserError(f"--format {config.format}: not one of {', '.join(FORMATS)}")
    source, images_dir, out_dir = Path(config.annotations), Path(config.images_dir), Path(config.out_dir)
    if not source.exists():
        raise UserError(f"{source}: annotations not found (--annotations)")
    if not images_dir.is_dir():
        raise UserError(f"{images_dir}: images folder not found (--images)")
    if out_dir.resolve() == source.resolve() or images_dir.resolve().is_relative_to(out_dir.resolve()):
        raise UserError(f"{out_dir}: would write over the input; choose another --out")
    chosen = _chosen(config.classes)
    problems = Problems()
    records, declared = _parse(config.format, source, images_dir, chosen, problems, config.drop_unknown)
    classes = class_order(records, declared, chosen)
    if not classes:
        problems.add("no classes found", "no labelled shape")
    found, dropped = check_records(records, classes, images_dir, problems, config.drop_unknown)
    if problems.counts:
        raise UserError(problems.line(str(source)))
    mask_for = functools.partial(voc.voc_mask, classes=classes, drop=config.drop_unknown) if config.format == "voc" else render
    write_dataset(out_dir, found, classes, mask_for, link=not config.copy)
    for label, count in dropped.items():
        log.info("left out %d shapes labelled '%s' (--drop-unknown)", count, label)
    result = ImportResult(out_dir, len(found), classes, dropped)
    log.info("%s: %d images, classes %s; train with: unetkit train --data %s --num-classes %d", out_dir, len(found),
             ", ".join(classes), out_dir, result.num_classes)
    return result


def _chosen(text: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text if name.strip())
    if len(set(names)) != len(names):
        raise UserError(f"--classes {','.join(text)}: names a class twice")
    if any(name in BACKGROUND_NAMES for name in names):
        raise UserError(f"--classes {','.join(text)}: background is class 0 already; list the others")
    return names


def _parse(fmt: str, source: Path, images_dir: Path, chosen: tuple[str, ...], problems: Problems,
           drop: bool) -> tuple[list[Any], list[str]]:
    if fmt == "voc":
        return voc.parse(source, images_dir, chosen, problems, drop)
    if fmt == "labelme":
        files = sorted(source.glob("*.json")) if source.is_dir() else [source]
        if not files:
            raise UserError(f"{source}: no LabelMe .json files found")
        return labelme.parse([(path, read_json(path)) for path in files], problems)
    if source.is_dir():
        raise UserError(f"{source}: --annotations for {fmt} is one file")
    if fmt == "cvat":
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{source}: cannot read ({exc})") from None
        return cvat.parse(text, source, problems)
    data = read_json(source)
    if fmt == "coco":
        return coco.parse(data, source, problems)
    return labelstudio.parse(data, source, problems, images_dir)


__all__ = ["FORMATS", "ImportResult", "import_annotations"]
