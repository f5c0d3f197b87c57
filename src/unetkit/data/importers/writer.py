"""From parsed records to a labelled folder (images/, masks/, classes.yaml) that `train --data` reads.

Everything is checked before the first byte is written: unknown labels, images missing from DIR or named outside it,
degenerate shapes and sizes that disagree are collected over the whole file, counted per kind with two examples
each, and refused as one line. The folder is then written under a temporary name beside --out and renamed into
place, so a failure halfway leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from unetkit.data.importers.shapes import BACKGROUND_NAMES, ImageRecord
from unetkit.data.io import write_png
from unetkit.data.naming import examples
from unetkit.data.regions import image_size
from unetkit.errors import UserError
from unetkit.fileio import write_text

IGNORE_VALUE = 255  # mask value of pixels to leave out (VOC's); named `ignore` in classes.yaml
PALETTE_SEED = 7  # classes' random colours in the written palette PNGs (background black, ignore white)


@dataclass
class Problems:
    """Problems of one kind each counted, with the first examples; `line()` is the one-line refusal."""

    counts: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, example: str) -> None:
        """None, so that a parser reports and skips what is wrong in one `return problems.add(...)`."""
        self.counts.setdefault(kind, []).append(example)

    def line(self, where: str) -> str:
        parts = [f"{kind}: {len(found)} ({examples(found)})" for kind, found in self.counts.items()]
        return f"{where}: nothing written; " + "; ".join(parts)


@dataclass
class ImportResult:
    out_dir: Path
    n_images: int
    classes: list[str]  # class 1.. (background is 0)
    left_out: dict[str, int]  # shapes left out on request (--drop-unknown), by label

    @property
    def num_classes(self) -> int:
        """The --num-classes that trains on the folder: 1 (binary) for one class, else classes + background."""
        return 1 if len(self.classes) == 1 else len(self.classes) + 1


def class_order(records: list[ImageRecord], declared: list[str], chosen: tuple[str, ...]) -> list[str]:
    """Class names 1..K: --classes as given, else the file's declared labels, then others in order of use."""
    if chosen:
        return list(chosen)
    names = dict.fromkeys(declared + [shape.label for record in records for shape in record.shapes])
    return [name for name in names if name not in BACKGROUND_NAMES]


def check_records(records: list[ImageRecord], classes: list[str], images_dir: Path, problems: Problems,
                  drop_unknown: bool) -> tuple[list[tuple[ImageRecord, Path]], dict[str, int]]:
    """Each record with its image file; unknown labels, missing or outside images into `problems`."""
    known = set(classes) | set(BACKGROUND_NAMES)
    found: list[tuple[ImageRecord, Path]] = []
    dropped: Counter[str] = Counter()
    stems: dict[str, str] = {}
    root = images_dir.resolve()
    for record in records:
        for label in (shape.label for shape in record.shapes if shape.label not in known):
            if drop_unknown:
                dropped[label] += 1
            else:
                problems.add("labels not in --classes" if classes else "unknown labels", f"'{label}' in {record.name}")
        path = images_dir / record.name
        if not path.resolve().is_relative_to(root):
            problems.add(f"image paths outside {images_dir}", record.name)
        elif not path.is_file():
            problems.add(f"images not found in {images_dir}", record.name)
        elif path.stem in stems:
            problems.add("images sharing a stem (masks would overwrite each other)", f"{record.name} and {stems[path.stem]}")
        else:
            stems[path.stem] = record.name
            found.append((record, path))
    return found, dict(dropped)


def write_dataset(out_dir: Path, found: list[tuple[ImageRecord, Path]], classes: list[str],
                  mask_for: Callable[[ImageRecord, dict[str, int], int, int], np.ndarray], link: bool = True) -> None:
    """images/ (hard links where the file system allows, else copies), masks/ (palette PNGs) and classes.yaml."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"{out_dir}: exists and is not empty; import writes a new folder (choose another --out)")
    staging = out_dir.parent / f".{out_dir.name}.importing-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    index_of = {name: i + 1 for i, name in enumerate(classes)} | {name: 0 for name in BACKGROUND_NAMES}
    palette = np.random.default_rng(PALETTE_SEED).integers(40, 256, (256, 3)).astype(np.uint8)
    palette[0], palette[IGNORE_VALUE] = 0, 255
    try:
        (staging / "images").mkdir(parents=True)
        (staging / "masks").mkdir()
        ignored = False
        for record, path in found:
            height, width = image_size(path)
            if (record.width, record.height) != (None, None) and (record.width, record.height) != (width, height):
                raise UserError(f"{path}: image is {width}x{height} but the annotations say {record.width}x"
                                f"{record.height} ({record.where or record.name})")
            mask = mask_for(record, index_of, height, width)
            ignored |= bool((mask == IGNORE_VALUE).any())
            write_png(staging / "masks" / f"{path.stem}.png", mask, palette)
            _place(path, staging / "images" / path.name, link)
        entries = [{"name": "background", "value": 0}] + [{"name": n, "value": i + 1} for i, n in enumerate(classes)]
        if ignored:
            entries.append({"name": "ignore", "value": IGNORE_VALUE, "ignore": True})
        write_text(staging / "classes.yaml", yaml.safe_dump({"classes": entries}, sort_keys=False))
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _place(source: Path, target: Path, link: bool) -> None:
    if link:
        with contextlib.suppress(OSError):  # another file system, or links not allowed: copy
            os.link(source, target)
            return
    shutil.copy2(source, target)
