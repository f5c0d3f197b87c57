"""What to tell a user whose layout is almost right, and what to warn about masks that look wrong.

A hint must never point at the wrong folder: a public data set often ships a field-of-view or region mask beside its
labels (DRIVE: `mask/` and `1st_manual/`), and "rename mask to masks" would train a field-of-view detector. So when
DIR/masks is missing, every sibling folder holding image files is a candidate, listed with how many images its files
pair with and what its values look like; a rename is suggested only when there is exactly one candidate, and
otherwise the user chooses with `--masks`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from unetkit.data.io import is_image_file, read_array
from unetkit.data.naming import Matched, NamePattern, guess_patterns, ids_by_pattern, list_images, match
from unetkit.errors import UserError

log = logging.getLogger("unetkit")

MASK_FOLDERS = ("masks", "labels")  # where masks are read from, in this order of naming
MASK_SUFFIX = "_mask"  # ID_mask.png is the mask of ID.*
_IMAGE_FOLDER_LOOKALIKES = ("images", "image", "imgs", "img")
SAMPLED_MASKS = 3  # files of a candidate folder whose values are looked at
FEW_VALUES = 16  # at most this many distinct values: "few values" (class indices), beyond: "many values"
FULL_SHARE = 0.9  # masks whose foreground covers at least this share of every image look like regions
SAME_SHARE = 0.99  # masks agreeing with the first on this share of pixels count as identical


def mask_folder(root: Path, image_dir: Path, image_name: str, mask_names: tuple[NamePattern, ...]) -> Path:
    """DIR/masks or DIR/labels, whichever holds images (both: refused); else one line naming the candidate folders."""
    present = [root / name for name in MASK_FOLDERS if (root / name).is_dir()]
    if len(present) == 2 and all(_holds_images(folder) for folder in present):
        raise UserError(f"{root}: holds both masks/ and labels/ with image files; unetkit reads masks from one of them, "
                        "rename or move the other (or choose one with --masks)")
    if present:
        return next((folder for folder in present if _holds_images(folder)), present[0])
    wanted = f"{root / 'masks'}: folder not found (masks are read from {root}/masks or {root}/labels)"
    candidates = [path for path in sorted(root.iterdir()) if path.is_dir() and path != image_dir
                  and not path.name.startswith(".") and _holds_images(path)]
    if not candidates:
        mixed = min((p.name for p in image_dir.iterdir() if is_image_file(p) and p.stem.endswith(MASK_SUFFIX)), default=None)
        hint = f"; {image_dir} holds masks ({mixed}): move them to {root / 'masks'}" if mixed else ""
        raise UserError(f"{wanted}{hint}")
    described = [_describe(folder, image_dir, image_name, mask_names) for folder in candidates]
    if len(candidates) == 1 and described[0][1] > 0:
        raise UserError(f"{wanted}; found {candidates[0]}: rename it to masks or pass --masks {candidates[0]} "
                        f"({described[0][0]})")
    listed = "; ".join(f"{folder} ({text})" for folder, (text, _) in zip(candidates, described))
    raise UserError(f"{wanted}; {len(candidates)} folder{'s' if len(candidates) > 1 else ''} could hold the labels: "
                    f"{listed}; choose with --masks DIR (and --image-name/--mask-name where names differ)")


def _holds_images(folder: Path) -> bool:
    return any(is_image_file(path) for path in folder.iterdir() if not path.name.startswith("."))


def _describe(folder: Path, image_dir: Path, image_name: str, mask_names: tuple[NamePattern, ...]) -> tuple[str, int]:
    """('20 files, pair with 20 of 20 images; binary, 12% foreground', pairs) for a candidate mask folder;
    when its names pair with nothing, the naming rule that would pair them."""
    try:
        images, masks = list_images(image_dir), list_images(folder)
        by_id = ids_by_pattern(images, NamePattern(image_name), image_dir) if image_name else images
    except UserError as exc:
        return f"unreadable: {exc}", 0
    matched = match(by_id, masks, mask_names)
    text = f"{len(masks)} file{'s' if len(masks) != 1 else ''}, pair with {len(matched.pairs)} of {len(images)} images"
    if not matched.pairs and (guessed := guess_patterns([p.name for p in images.values()], [p.name for p in masks.values()])):
        matched = match(ids_by_pattern(images, NamePattern(guessed[0]), image_dir), masks, (NamePattern(guessed[1]),))
        text += f", {len(matched.pairs)} with --image-name '{guessed[0]}' --mask-name '{guessed[1]}'"
    return f"{text}; {value_kind(list(masks.values())[:SAMPLED_MASKS])}", len(matched.pairs)


def value_kind(paths: list[Path]) -> str:
    """'binary, 12% foreground', 'few values (1, 2, 3)' or 'many values (240 distinct)' for a few mask files."""
    try:
        arrays = [read_array(path, palette_indices=True) for path in paths]
    except UserError:
        return "unreadable values"
    values = np.unique(np.concatenate([np.unique(a) for a in arrays]))
    if len(values) <= 2 and values.min() == 0 or len(values) == 1:
        share = float(np.mean([np.mean(a[:, :, 0] != 0) for a in arrays]))
        same = len(arrays) > 1 and all(_agreement(arrays[0], a) >= SAME_SHARE for a in arrays[1:])
        return f"binary, {share:.0%} foreground" + (", the same in every file sampled" if same else "")
    if len(values) <= FEW_VALUES:
        return f"few values ({', '.join(str(v) for v in values.tolist())})"
    return f"many values ({len(values)} distinct)"


def _agreement(first: np.ndarray, other: np.ndarray) -> float:
    return float(np.mean((first != 0) == (other != 0))) if first.shape == other.shape else 0.0


def image_folder_hint(root: Path) -> str:
    """Why DIR/images is missing, when the folder says so: a lookalike name, a train/ inside, images at the top."""
    for path in sorted(root.iterdir()):
        if path.is_dir() and path.name.lower() in _IMAGE_FOLDER_LOOKALIKES and path.name != "images":
            return f"; found {path}: rename it to images (or pass --images {path})"
    if holders := sorted((path for path in root.iterdir() if (path / "images").is_dir() and not path.name.startswith(".")),
                         key=lambda path: (path.name != "train", path.name)):
        return f"; {holders[0]} holds images/: pass that folder (--data {holders[0]})"
    # Carvana: DIR/train with the images, DIR/train_masks with the masks
    masks = min((path for path in root.iterdir() if path.is_dir() and path.name.endswith(f"{MASK_SUFFIX}s")), default=None)
    if masks is not None and (pictures := root / masks.name.removesuffix(f"{MASK_SUFFIX}s")).is_dir():
        return (f"; {pictures} and {masks} look like images and masks: pass --images {pictures} --masks {masks} "
                f"(or rename them to {root}/images and {root}/masks)")
    if any(is_image_file(path) for path in root.iterdir() if path.is_file()):
        return f"; {root} holds image files itself: put the images in {root}/images and the masks in {root}/masks"
    return ""


def unpaired_hint(images: dict[str, Path], matched: Matched, mask_dir: Path, named: bool) -> str:
    """What explains files left unpaired: masks among the images, names that differ by a suffix."""
    for image in matched.lonely_images:
        if (mixed := images.get(f"{image.stem}{MASK_SUFFIX}")) is not None:
            return f"; {mixed.name} is among the images: move the masks to {mask_dir}"
    names = [[p.name for p in side] for side in (matched.lonely_images, matched.lonely_masks)]
    if not (matched.pairs or named) and (guessed := guess_patterns(*names)):
        return f"; the names differ around an id: pass --image-name '{guessed[0]}' --mask-name '{guessed[1]}'"
    for mask in matched.lonely_masks:
        stem = mask.stem.removesuffix(MASK_SUFFIX)
        if near := sorted(i.name for i in images.values() if i.stem.startswith(f"{stem}_")):
            return (f"; {near[0]} matches {mask.name} only up to a suffix: name images ID.* and masks ID.* or "
                    f"ID{MASK_SUFFIX}.*, or pass --image-name/--mask-name")
    return ""


def suspicious_masks(coverage: np.ndarray, masks: np.ndarray | None, where: str) -> str | None:
    """A warning when the masks look like a field of view, not labels: each nearly all foreground, or (stacked) all alike."""
    if len(coverage) == 0:
        return None
    if float(coverage.min()) >= FULL_SHARE:
        return (f"{where}: every mask is at least {FULL_SHARE:.0%} foreground (mean {coverage.mean():.0%}); a field-of-"
                "view or region mask instead of the labels? check the mask folder (--masks)")
    if masks is not None and len(masks) >= 2 and masks.dtype != object and coverage.max() > 0:
        if all(_agreement(masks[0], m) >= SAME_SHARE for m in masks[1:]):
            return (f"{where}: all {len(masks)} masks are the same (to {SAME_SHARE:.0%} of pixels); a field-of-view or "
                    "region mask instead of the labels? check the mask folder (--masks)")
    return None
