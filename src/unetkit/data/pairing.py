"""Finding the labelled pairs of a data set, in any layout: the one function every reader calls.

A data set is given by a `DataSource`: a folder DIR with DIR/images and DIR/masks (or DIR/labels), or the two
folders named apart (`--images DIR --masks DIR`, which also override one side of DIR), or a CSV of pairs (`--pairs
FILE.csv`, columns image,mask, paths relative to the file). Names pair by data/naming.py's rules. Every image needs
exactly one mask and every mask an image: what is left over is one line with the counts and two names from each
side, never a silent drop.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from unetkit.data.io import check_image_file, check_regular_file
from unetkit.data.layout_hints import image_folder_hint, mask_folder, unpaired_hint
from unetkit.data.naming import DEFAULT_MASK_NAMES, NamePattern, examples, ids_by_pattern, list_images, match, unpaired_message
from unetkit.errors import UserError

CLASSES_FILE = "classes.yaml"


@dataclass(frozen=True)
class Pair:
    stem: str
    image: Path
    mask: Path


@dataclass(frozen=True)
class DataSource:
    """Where a labelled set's images and masks are and how their names pair; field names are DataConfig's."""

    data_dir: str = ""  # DIR with images/ and masks/ (or labels/)
    images_dir: str = ""  # the images, when not DIR/images
    masks_dir: str = ""  # the masks, when not DIR/masks or DIR/labels
    image_name: str = ""  # '{id}_training.tif': how an image's name holds its id (default '{id}.*')
    mask_name: str = ""  # '{id}_manual1.gif': a mask's name for that id (default '{id}.*' or '{id}_mask.*')
    pairs: str = ""  # FILE.csv with columns image,mask (paths relative to the file)

    def __post_init__(self) -> None:
        folders = [flag for flag, value in (("--images", self.images_dir), ("--masks", self.masks_dir),
                                            ("--image-name", self.image_name), ("--mask-name", self.mask_name),
                                            ("--data", self.data_dir)) if value]
        if self.pairs and folders:
            raise UserError(f"--pairs {self.pairs}: lists every image and mask itself; {', '.join(folders)} cannot "
                            "take effect with it (give one or the other)")

    @classmethod
    def of(cls, where: DataSource | str | os.PathLike[str]) -> DataSource:
        return where if isinstance(where, DataSource) else cls(data_dir=str(where))

    @classmethod
    def from_fields(cls, values: Any) -> DataSource:
        """From a DataConfig, or its stored form (a run's config.yaml): the fields of the same names."""
        get = values.get if isinstance(values, dict) else (lambda name, default: getattr(values, name, default))
        return cls(**{f.name: str(get(f.name, "") or "") for f in fields(cls)})

    def __bool__(self) -> bool:
        return bool(self.data_dir or self.images_dir or self.pairs)

    def __str__(self) -> str:
        return self.pairs or self.data_dir or self.images_dir

    def classes_file(self) -> Path | None:
        """classes.yaml beside the data: in DIR; else beside the pairs file; else in the masks' folder or its parent."""
        if self.data_dir:
            places = [Path(self.data_dir)]
        elif self.pairs:
            places = [Path(self.pairs).parent]
        else:
            places = [Path(self.masks_dir), Path(self.masks_dir).parent] if self.masks_dir else []
        return next((place / CLASSES_FILE for place in places if (place / CLASSES_FILE).is_file()), None)

    def image_folder(self) -> Path:
        """--images, else DIR/images (one line saying what to rename or pass when it is missing)."""
        if self.images_dir:
            return _folder(Path(self.images_dir), "--images")
        if not self.data_dir:
            raise UserError("no data given (--data DIR with images/ and masks/, --images DIR with --masks DIR, or "
                            "--pairs FILE.csv)")
        root = _folder(Path(self.data_dir), "--data")
        if not (root / "images").is_dir():
            raise UserError(f"{root / 'images'}: folder not found{image_folder_hint(root)}")
        return root / "images"


def _folder(path: Path, flag: str) -> Path:
    if not path.is_dir():
        raise UserError(f"{path}: {'data ' if flag == '--data' else ''}folder not found ({flag})")
    return path


def find_pairs(where: DataSource | str | os.PathLike[str]) -> list[Pair]:
    """Every labelled pair of the data set, in the order of the images' names (or of the pairs file)."""
    source = DataSource.of(where)
    if source.pairs:
        return read_pairs_file(Path(source.pairs))
    image_dir = source.image_folder()
    mask_names = (NamePattern(source.mask_name, "--mask-name"),) if source.mask_name else tuple(
        NamePattern(text) for text in DEFAULT_MASK_NAMES)
    if source.masks_dir:
        mask_dir = _folder(Path(source.masks_dir), "--masks")
    elif source.data_dir:
        mask_dir = mask_folder(Path(source.data_dir), image_dir, source.image_name, mask_names)
    else:
        raise UserError(f"--images {image_dir}: needs --masks DIR (the masks' folder) or --data DIR holding masks/")
    images, by_id = _images(image_dir, source.image_name)
    masks = list_images(mask_dir)
    matched = match(by_id, masks, mask_names)
    if matched.doubled:
        image, first, second = matched.doubled
        raise UserError(f"{second}: image {image.name} has two masks ({first.name} and {second.name}); keep one")
    if matched.lonely_images or matched.lonely_masks:
        rule = (f"images named '{source.image_name or '{id}.*'}' and masks "
                f"{' or '.join(repr(p.text) for p in mask_names)}")
        raise UserError(unpaired_message(image_dir, mask_dir, len(images), len(masks), matched, rule)
                        + unpaired_hint(images, matched, mask_dir, bool(source.image_name or source.mask_name)))
    return [Pair(image_id, image, mask) for image_id, (image, mask) in matched.pairs.items()]


def _images(folder: Path, image_name: str) -> tuple[dict[str, Path], dict[str, Path]]:
    """The images of `folder` by stem, and by their id under --image-name `image_name` (by stem without one)."""
    images = list_images(folder)
    if not images:
        raise UserError(f"{folder}: no images found")
    return images, ids_by_pattern(images, NamePattern(image_name, "--image-name"), folder) if image_name else images


def read_pairs_file(path: Path) -> list[Pair]:
    """FILE.csv with columns image,mask (paths relative to FILE's folder), one pair a row."""
    pairs: list[Pair] = []
    seen: dict[str, int] = {}
    missing: list[str] = []
    for number, row in _csv_rows(path, ("image", "mask")):
        image, mask = (_listed(path, row[column]) for column in ("image", "mask"))
        missing += [str(file) for file in (image, mask) if not file.exists() and not file.is_symlink()]
        if image.stem in seen:
            raise UserError(f"{path}: rows {seen[image.stem]} and {number} both name an image '{image.stem}.*' "
                            "(images are known by their stem in splits and reports; give them distinct names)")
        seen[image.stem] = number
        pairs.append(Pair(image.stem, image, mask))
    if missing:
        raise UserError(f"{path}: {len(missing)} listed files not found ({examples(missing)}); paths are relative "
                        f"to {path.parent}")
    for file in (file for pair in pairs for file in (pair.image, pair.mask)):
        check_image_file(file, f" (listed in {path})")
    return pairs


def _csv_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(row number, row) of a CSV with `columns`; rows with an empty first column are refused."""
    check_regular_file(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            lacking = [column for column in columns if column not in header]
            if lacking:
                raise UserError(f"{path}: needs the columns {', '.join(columns)} (found: {', '.join(header) or 'none'})")
            rows = [(number, {k.strip(): (v or "").strip() for k, v in row.items() if k})
                    for number, row in enumerate(reader, 2)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: not a readable CSV ({exc})") from None
    for number, row in rows:
        if not row.get(columns[0]):
            raise UserError(f"{path}: row {number} has no {columns[0]}")
    if not rows:
        raise UserError(f"{path}: lists no pairs")
    return rows


def _listed(csv_path: Path, text: str) -> Path:
    if not text:
        raise UserError(f"{csv_path}: a row has an empty path")
    return csv_path.parent / text  # an absolute path stays itself


def find_images(input_path: str, image_name: str = "", pairs: str = "") -> list[Path]:
    """The images `predict` reads: one file, every image of a folder (those fitting --image-name, all of
    which must), or the image column of a pairs file."""
    if pairs:
        if input_path or image_name:
            raise UserError(f"--pairs {pairs}: lists the images itself; --input/--image-name cannot take effect with it")
        files = [_listed(Path(pairs), row["image"]) for _, row in _csv_rows(Path(pairs), ("image",))]
        for file in files:
            check_regular_file(file)
        return files
    path = Path(input_path)
    if not input_path:
        raise UserError("no images given (--input FILE or DIR, --images DIR, or --pairs FILE.csv)")
    if path.is_dir():
        return list(_images(path, image_name)[1].values())
    if image_name:
        raise UserError(f"--image-name '{image_name}': selects files of a folder; --input {path} is one file")
    check_image_file(path)  # missing, a link loop, a FIFO: named, never opened
    return [path]
