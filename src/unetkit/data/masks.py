"""Turning stored mask values into class indices, and refusing values that don't fit; reading classes.yaml.

The peers' most common failure is a run that trains on masks whose values do not mean what the model thinks (0/255 read
as 256 classes, colours as indices) and silently predicts all background. Every mask goes through `decode_mask`, which
either maps its values to indices 0..num_classes-1 or stops with one line naming the file and values.

classes.yaml names the classes a mask's stored colours or values stand for, in two forms. The full one lists entries in
class order: `classes: [{name: background, value: 0}, {name: road, color: [128, 64, 128]}, {name: border, value: 3,
ignore: true}]`. The short one is a mapping, one line a class, with `ignore` naming the stored values to leave out of
loss and metrics (a trimap: `background: 2`, `pet: 1`, `ignore: 3`). Ignored entries are no class: they map to
data.ignore_index (255 unless set).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from unetkit.data.io import check_finite, drop_uniform_alpha, first_line, read_array
from unetkit.data.pairing import DataSource
from unetkit.errors import UserError

BINARY_ENCODINGS = ((0, 1), (0, 255), (0, 65535))  # (background, foreground) values of binary masks
IGNORE_NAME = "ignore"  # classes.yaml's short form's key for values to leave out
DEFAULT_IGNORE_INDEX = 255  # what ignored pixels become when data.ignore_index is not set


def read_raw_mask(path: str | os.PathLike[str], palette: ClassPalette | None = None,
                  hashes: dict[Path, str] | None = None) -> np.ndarray:
    """A mask file as io.read_array decodes it: palette PNGs as their indices, unless classes.yaml names colours."""
    return read_array(path, palette_indices=not (palette and palette.by_colour), hashes=hashes)


def to_classes(raw: np.ndarray, path: str | os.PathLike[str], num_classes: int, ignore_index: int | None = None,
               palette: ClassPalette | None = None, multilabel: bool = False) -> np.ndarray:
    """`read_raw_mask`'s array as training takes it: (H, W, K) labels, or (H, W) indices (classes.yaml's, decode_mask's)."""
    if multilabel:
        return decode_multilabel(raw, num_classes, path)
    return palette.indices(raw, path) if palette else decode_mask(raw, num_classes, path, ignore_index)


def decode_mask(raw: np.ndarray, num_classes: int, path: str | os.PathLike[str],
                ignore_index: int | None = None) -> np.ndarray:
    """A stored mask (H, W) or (H, W, C) -> uint8 class indices (H, W). Binary: 0/1, 0/255 and 0/65535 (TGS) map
    to 0/1; num_classes > 1 needs indices below it (a two-class model also reads 0/255, 0/65535 as binary).
    Pixels equal to `ignore_index` keep that value (the loss and the metrics skip them)."""
    check_finite(raw, path)  # NaN != NaN would otherwise pass for a channel that differs from itself
    if raw.ndim == 3:
        raw = drop_uniform_alpha(raw)
        if raw.shape[2] > 1 and np.any(raw != raw[:, :, :1]):
            raise UserError(f"{path}: mask has {raw.shape[2]} different channels; masks must be single-channel "
                            "class indices or binary")
        raw = raw[:, :, 0]
    values = _distinct(raw)
    if ignore_index is None:
        return _decode_values(raw, values, num_classes, path)
    decoded = _decode_values(raw, values[values != ignore_index], num_classes, path)
    decoded[raw == ignore_index] = ignore_index
    return decoded


def decode_multilabel(raw: np.ndarray, labels: int, path: str | os.PathLike[str]) -> np.ndarray:
    """A mask with one channel per label (multi-page TIFF, or PNG for up to 4) -> (H, W, labels) uint8 0/1."""
    raw = raw if raw.ndim == 3 else raw[:, :, None]  # a one-channel region read comes back (H, W)
    if raw.shape[2] != labels:
        raise UserError(f"{path}: mask has {raw.shape[2]} channels but the model has {labels} labels "
                        "(multi-label masks carry one binary channel per label)")
    check_finite(raw, path)
    return np.stack([_decode_values(raw[:, :, i], _distinct(raw[:, :, i]), 1, path) for i in range(labels)], axis=2)


def _distinct(raw: np.ndarray) -> np.ndarray:
    """np.unique(raw), sooner for the common masks than unique's hashing: a binary mask by counting its lowest and
    highest value, another 8-bit one by a count of its 256 values."""
    low, high = raw.min(), raw.max()
    if low == high or np.count_nonzero(raw == low) + np.count_nonzero(raw == high) == raw.size:
        return np.array([low] if low == high else [low, high], raw.dtype)
    if raw.dtype == np.uint8:
        return np.flatnonzero(np.bincount(raw.reshape(-1), minlength=256)).astype(np.uint8)
    return np.unique(raw)


def _decode_values(raw: np.ndarray, values: np.ndarray, num_classes: int, path: str | os.PathLike[str]) -> np.ndarray:
    if num_classes <= 2:
        present = set(values.tolist())
        for background, foreground in BINARY_ENCODINGS:
            if present <= {background, foreground}:
                return (raw == foreground).astype(np.uint8)
    integral = np.issubdtype(values.dtype, np.integer) or bool(np.all(values == np.round(values)))
    if num_classes == 1:
        raise UserError(f"{path}: mask values {_show(values)} are not a binary mask (binary masks hold 0 for "
                        f"background and one of 1, 255 or 65535 for foreground){_binary_hint(values, integral)}")
    if not integral or (len(values) and (values.min() < 0 or values.max() >= num_classes)):
        raise UserError(f"{path}: mask values {_show(values)} do not fit num_classes={num_classes} (expected class "
                        f"indices 0..{num_classes - 1}, or a classes.yaml naming colours or values)"
                        f"{_indices_hint(values) if integral else ''}")
    return raw.astype(np.uint8)


def _indices_hint(values: np.ndarray) -> str:
    """The fix for values 0..K-1 with most of them present (0, 1, 2 or 0, 1, 3), not a few levels over 0..255."""
    top = int(values.max()) if len(values) else 0
    looks = len(values) >= 3 and values.min() >= 0 and top < 256 and top + 1 <= 2 * len(values)
    return f"; they look like class indices: train with --num-classes {top + 1}" if looks else ""


def _binary_hint(values: np.ndarray, integral: bool) -> str:
    """What a binary model's mask that fits no encoding probably is, and the fix (flags, not only YAML keys)."""
    others = [v for v in values.tolist() if v != 0]
    if len(others) == 1:  # 0/128, 0/100, 1.0/0.5: a binary mask with another foreground value
        return f"; if {_show_one(others[0])} marks the foreground, save the masks with 255 (or 1) there"
    if not integral:
        return "; float masks must hold exactly 0 and 1"
    if hint := _indices_hint(values):
        return hint
    if len(values) > 16:
        return "; an antialiased or JPEG-compressed mask? save masks losslessly (PNG) with 0 and 255 only"
    return (f"; if each value is a class, train with --num-classes {len(values)} and name the values in "
            "DIR/classes.yaml ({name: ..., value: V} per class)")


def _show_one(value: float | int) -> str:
    return f"{value:g}" if isinstance(value, float | np.floating) else str(value)


def _show(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(_show_one(v) for v in values[:limit].tolist())
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)} distinct)"


@dataclass(frozen=True)
class ClassPalette:
    """Classes named in DIR/classes.yaml: a colour (RGB masks) or a stored value (index masks) each;
    `ignored` colours or values (codes as `indices` computes them) become `ignore_to`."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int] | None, ...]
    values: tuple[int | None, ...]
    ignored: tuple[int, ...] = ()
    ignore_to: int = DEFAULT_IGNORE_INDEX

    @property
    def by_colour(self) -> bool:
        """Masks are read through colours (every class names one), else through stored values."""
        return all(c is not None for c in self.colors)

    def indices(self, raw: np.ndarray, path: str | os.PathLike[str]) -> np.ndarray:
        """Stored mask (H, W, C) -> uint8 class indices (H, W); unknown colours or values name the file."""
        if raw.shape[2] >= 3 and self.by_colour:
            rgb = raw[:, :, :3].astype(np.int64)
            codes = rgb[:, :, 0] << 16 | rgb[:, :, 1] << 8 | rgb[:, :, 2]
            table = {r << 16 | g << 8 | b: i for i, (r, g, b) in enumerate(self.colors)}  # type: ignore[misc]
            shown = "colours"
        else:
            codes = raw[:, :, 0].astype(np.int64)
            table = {int(v if v is not None else i): i for i, v in enumerate(self.values)}
            shown = "values"
        table |= {code: self.ignore_to for code in self.ignored}
        found, inverse = np.unique(codes, return_inverse=True)
        unknown = [int(code) for code in found if int(code) not in table]
        if unknown:
            described = [f"({c >> 16}, {c >> 8 & 255}, {c & 255})" if shown == "colours" else str(c) for c in unknown[:3]]
            raise UserError(f"{path}: mask {shown} {', '.join(described)}{' ...' if len(unknown) > 3 else ''} "
                            "are not named in classes.yaml")
        lookup = np.array([table[int(code)] for code in found], dtype=np.uint8)
        return lookup[inverse].reshape(codes.shape)


def read_entries(path: Path) -> list[dict[str, Any]]:
    """The entries of `path` as [{name, color | value, ignore}], in class order, checked."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid YAML ({first_line(exc)})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected 'classes:' with a name and a color or value each, or 'name: value' lines")
    raw = data["classes"] if "classes" in data else _short_form(data)
    try:
        entries = [{"name": str(entry["name"]),
                    "color": tuple(int(c) for c in entry["color"]) if entry.get("color") is not None else None,
                    "value": int(entry["value"]) if entry.get("value") is not None else None,
                    "ignore": bool(entry.get("ignore", False))} for entry in raw]
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: expected 'classes:' with a name and a color [r, g, b] or a value each ({exc})") from None
    if any(e["color"] is not None and len(e["color"]) != 3 for e in entries):
        raise UserError(f"{path}: every color must be [r, g, b]")
    if any(e["ignore"] and e["color"] is None and e["value"] is None for e in entries):
        raise UserError(f"{path}: an ignored entry needs the value or color it ignores")
    return entries


def _short_form(data: dict[str, Any]) -> list[dict[str, Any]]:
    """`name: value` (or `name: [r, g, b]`) lines; `ignore: v` or `ignore: [v, w]` for values to leave out."""
    entries: list[dict[str, Any]] = []
    for name, value in data.items():
        if str(name) == IGNORE_NAME:
            ignored = value if isinstance(value, list) else [value]
            entries += [{"name": IGNORE_NAME, "value": v, "ignore": True} for v in ignored]
        else:
            entries.append({"name": name, "color" if isinstance(value, list) else "value": value})
    return entries


def has_ignored(path: Path | None) -> bool:
    return path is not None and any(entry["ignore"] for entry in read_entries(path))


def read_class_palette(data_dir: DataSource | str | os.PathLike[str], num_classes: int,
                       ignore_index: int | None = None) -> ClassPalette | None:
    """DIR/classes.yaml if present (DataSource.classes_file says where, for other layouts). Ignored entries map to
    `ignore_index` (DEFAULT_IGNORE_INDEX when None)."""
    path = DataSource.of(data_dir).classes_file()
    if path is None:
        return None
    entries = read_entries(path)
    kept = [entry for entry in entries if not entry["ignore"]]
    if len(kept) != max(num_classes, 2):
        raise UserError(f"{path}: names {len(kept)} classes but model.num_classes is {num_classes} "
                        f"(set --num-classes {len(kept) if len(kept) > 2 else 1})")
    colors = tuple(entry["color"] for entry in kept)
    by_colour = all(c is not None for c in colors)
    return ClassPalette(tuple(entry["name"] for entry in kept), colors,  # type: ignore[arg-type]
                        tuple(entry["value"] for entry in kept),
                        tuple(_code(entry, by_colour) for entry in entries if entry["ignore"]),
                        DEFAULT_IGNORE_INDEX if ignore_index is None else ignore_index)


def _code(entry: dict[str, Any], by_colour: bool) -> int:
    """An ignored entry's code as `ClassPalette.indices` compares it: r << 16 | g << 8 | b, or the value."""
    if by_colour and entry["color"] is not None:
        r, g, b = entry["color"]
        return r << 16 | g << 8 | b
    return int(entry["value"] if entry["value"] is not None else entry["color"][0])


def class_table(data_dir: DataSource | str | os.PathLike[str], num_classes: int,
                multilabel: bool = False) -> list[dict[str, Any]]:
    """The classes of DIR/classes.yaml as stored in model files: [{"name": ..., "color": [r, g, b] | None}]."""
    palette = None if multilabel or num_classes == 1 else read_class_palette(data_dir, num_classes)
    return [{"name": name, "color": list(color) if color else None}
            for name, color in zip(palette.names, palette.colors)] if palette else []


def check_class_coverage(masks: np.ndarray, num_classes: int, ignore_index: int | None, where: str) -> None:
    """Before training: every class must occur somewhere, or the run could never learn it."""
    if masks.ndim == 4:  # multi-label: (N, H, W, labels)
        counts = np.concatenate([[0], np.count_nonzero(masks, axis=(0, 1, 2))])
        return check_class_counts(counts, num_classes, ignore_index, where, multilabel=True)
    flat, step = masks.reshape(-1), 2**20  # counted by chunks: one bincount would cast every pixel to intp at once
    counts = sum(np.bincount(flat[i:i + step], minlength=256) for i in range(0, flat.size, step))
    return check_class_counts(counts, num_classes, ignore_index, where)


def check_class_counts(counts: np.ndarray, num_classes: int, ignore_index: int | None, where: str,
                       multilabel: bool = False) -> None:
    """`check_class_coverage` on pixel counts per mask value (multi-label: counts[k] of label k - 1)."""
    counts = np.array(counts, np.int64)
    if multilabel:
        missing = [label for label in range(num_classes) if counts[label + 1] == 0]
        if missing:
            raise UserError(f"{where}: labels {missing} are never set in any mask; nothing to learn for them")
        return
    if ignore_index is not None:
        counts[ignore_index] = 0
    expected = max(num_classes, 2)
    missing = [c for c in range(expected) if counts[c] == 0]
    if 1 in missing and num_classes == 1:
        raise UserError(f"{where}: every mask is empty (no foreground pixel in any mask); nothing to learn")
    if missing:
        raise UserError(f"{where}: classes {missing} never occur in any mask, but model.num_classes (--num-classes) is "
                        f"{num_classes} (classes found: {[c for c in range(expected) if counts[c]]})")


def mask_channels(palette: ClassPalette | None, multilabel: bool) -> int | None:
    """The channels a mask is read with: all of them (multi-label), RGB through classes.yaml's colours, else one."""
    return None if multilabel else 3 if palette is not None and palette.by_colour else 1
