"""How file names pair: an image's id from its name, and the names its mask may carry.

A pattern is a file name with `{id}` where the shared part stands (`{id}_training.tif`, `{id}_manual1.gif`) and `*`
for any text (`{id}.*`: any extension). The default rule is the one unetkit has always read: the image is `{id}.*`,
its mask `{id}.*` or `{id}_mask.*` (Carvana's). Matching is by regular expression built here rather than `fnmatch`,
because the id must be captured, not only tested.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from unetkit.data.io import check_image_file
from unetkit.errors import UserError

DEFAULT_MASK_NAMES = ("{id}.*", "{id}_mask.*")
EXAMPLES = 2  # file names shown per side when files do not pair


def list_images(folder: Path) -> dict[str, Path]:
    """Image files of `folder` by stem; hidden files and folders are skipped, other entries are errors, refused
    by their kind without opening them (a FIFO named x.png would block its reader forever)."""
    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found")
    found: dict[str, Path] = {}
    with os.scandir(folder) as entries:  # scandir's entries know their kind: no stat per ordinary file
        listed = sorted(entries, key=lambda entry: entry.name)
    for entry in listed:
        try:
            is_folder, is_file = entry.is_dir(), entry.is_file()
        except OSError:  # a symbolic link loop: check_image_file names it
            is_folder = is_file = False
        if entry.name.startswith(".") or is_folder:
            continue
        path = folder / entry.name
        check_image_file(path, regular=is_file)  # a FIFO, socket or broken link: named by its kind
        if path.stem in found:
            raise UserError(f"{path}: two files share the stem '{path.stem}' (also {found[path.stem].name})")
        found[path.stem] = path
    return found


@dataclass(frozen=True)
class NamePattern:
    """`{id}_manual1.gif`: the text of a file name around its id; `flag` names where it came from."""

    text: str
    flag: str = ""

    def __post_init__(self) -> None:
        if self.text.count("{id}") != 1 or "/" in self.text:
            raise UserError(f"{self.flag or 'name pattern'} '{self.text}': a file name with {{id}} once "
                            "(e.g. '{id}_manual1.gif'; * matches any text)")

    def id_of(self, name: str) -> str | None:
        regex = "(?P<id>.+)".join(".*".join(map(re.escape, side.split("*"))) for side in self.text.split("{id}"))
        return found["id"] if (found := re.fullmatch(regex, name)) else None


def examples(names: list[str]) -> str:
    """'a.png, b.png' (the first EXAMPLES names, then '...')."""
    return ", ".join(names[:EXAMPLES]) + (", ..." if len(names) > EXAMPLES else "")


def ids_by_pattern(files: dict[str, Path], pattern: NamePattern, folder: Path) -> dict[str, Path]:
    """Files by their id under `pattern`; a file that does not fit it, or two files with one id, is refused."""
    found: dict[str, Path] = {}
    misfits = []
    for path in files.values():
        if (image_id := pattern.id_of(path.name)) is None:
            misfits.append(path.name)
        elif image_id in found:
            raise UserError(f"{path}: id '{image_id}' under {pattern.flag} '{pattern.text}' is also {found[image_id].name}")
        else:
            found[image_id] = path
    if misfits:
        raise UserError(f"{folder}: {len(misfits)} of {len(files)} files do not fit {pattern.flag} '{pattern.text}' "
                        f"({examples(misfits)}){'; nothing fits it' if not found else ''}")
    return found


@dataclass
class Matched:
    pairs: dict[str, tuple[Path, Path]]  # id -> (image, mask), in the images' order
    lonely_images: list[Path]
    lonely_masks: list[Path]
    doubled: tuple[Path, Path, Path] | None = None  # (image, first mask, second mask) when an image has two


def match(images: dict[str, Path], masks: dict[str, Path], mask_names: tuple[NamePattern, ...]) -> Matched:
    """Join images (by id) with mask files: a mask's id is the first of `mask_names` that names an image."""
    mask_of: dict[str, Path] = {}
    lonely_masks: list[Path] = []
    doubled = None
    for path in masks.values():
        image_id = next((i for p in mask_names if (i := p.id_of(path.name)) is not None and i in images), None)
        if image_id is None:
            lonely_masks.append(path)
        elif image_id in mask_of:
            doubled = doubled or (images[image_id], mask_of[image_id], path)
        else:
            mask_of[image_id] = path
    return Matched({i: (path, mask_of[i]) for i, path in images.items() if i in mask_of},
                   [path for i, path in images.items() if i not in mask_of], lonely_masks, doubled)


def guess_patterns(image_names: list[str], mask_names: list[str]) -> tuple[str, str] | None:
    """('{id}_training.tif', '{id}_manual1.gif') when the names of each side share a prefix and suffix
    (cut at a separator) around ids the two sides have in common; None when no such rule pairs all images."""
    if len(image_names) < 2 or len(mask_names) < 2:
        return None
    image_rule, mask_rule = _shared_frame(image_names), _shared_frame(mask_names)
    image_ids = [NamePattern(image_rule).id_of(n) for n in image_names]
    mask_ids = {NamePattern(mask_rule).id_of(n) for n in mask_names}
    fits = None not in image_ids and len(set(image_ids)) == len(image_ids) and set(image_ids) <= mask_ids
    return (image_rule, mask_rule) if fits else None


def _shared_frame(names: list[str]) -> str:
    """'{id}_training.tif' from ['21_training.tif', '22_training.tif']: the common prefix ending at a
    separator, {id}, the common suffix starting at one (a separator: any character not a letter or digit)."""
    prefix = os.path.commonprefix(names)
    suffix = os.path.commonprefix([name[::-1] for name in names])[::-1]
    prefix = prefix[: max((i + 1 for i, c in enumerate(prefix) if not c.isalnum()), default=0)]
    suffix = suffix[next((i for i, c in enumerate(suffix) if not c.isalnum()), len(suffix)):]
    return f"{prefix}{{id}}{suffix}" if len(prefix) + len(suffix) < min(len(name) for name in names) else "{id}" + suffix


def unpaired_message(image_dir: Path, mask_dir: Path, images: int, masks: int, matched: Matched, rule: str) -> str:
    """One line: how many images lack a mask and masks an image, two names from each side, the rule used."""
    lonely_i, lonely_m = ([path.name for path in side] for side in (matched.lonely_images, matched.lonely_masks))
    return (f"{image_dir} and {mask_dir}: {len(lonely_i)} of {images} images without a mask"
            f"{f' ({examples(lonely_i)})' if lonely_i else ''}, {len(lonely_m)} of {masks} masks without an "
            f"image{f' ({examples(lonely_m)})' if lonely_m else ''}; {len(matched.pairs)} paired by {rule}")
