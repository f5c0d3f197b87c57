"""Reading classes.yaml: the classes a mask's stored colours or values stand for, and which mean "ignore".

Two forms. The full one lists entries in class order:
`classes: [{name: background, value: 0}, {name: road, color: [128, 64, 128]}, {name: border, value: 3, ignore: true}]`.
The short one is a mapping, one line a class, with `ignore` naming the stored values to leave out of loss and
metrics (a trimap: `background: 2`, `pet: 1`, `ignore: 3`). Ignored entries are no class: they map to
data.ignore_index (255 unless set).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from unetkit.data.io import first_line
from unetkit.errors import UserError

IGNORE_NAME = "ignore"  # the short form's key for values to leave out
DEFAULT_IGNORE_INDEX = 255  # what ignored pixels become when data.ignore_index is not set


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
