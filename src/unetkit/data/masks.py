"""Turning stored mask values into class indices, and refusing values that don't fit.

The peers' most common failure is a run that trains on masks whose values do not mean
what the model thinks (0/255 read as 256 classes, colours as indices) and silently
predicts all background. Every mask goes through `decode_mask`, which either maps its
values to indices 0..num_classes-1 or stops with one line naming the file and values.
"""

from __future__ import annotations

import os

import numpy as np

from unetkit.errors import UserError

# Value pairs that mean background/foreground in binary masks.
BINARY_ENCODINGS = ((0, 1), (0, 255), (0, 65535))


def decode_mask(raw: np.ndarray, num_classes: int, path: str | os.PathLike[str]) -> np.ndarray:
    """Map a stored mask (H, W) or (H, W, C) to uint8 class indices (H, W).

    num_classes == 1 (binary): 0/1, 0/255 and 0/65535 (the TGS salt masks) all map to
    0/1. num_classes > 1: values must already be indices below num_classes, except that
    a two-class model also reads 0/255 and 0/65535 as binary.
    """
    if raw.ndim == 3 and raw.shape[2] in (2, 4) and raw[:, :, -1].min() == raw[:, :, -1].max():
        raw = raw[:, :, :-1]  # a uniform alpha channel carries nothing
    if raw.ndim == 3:
        if np.any(raw != raw[:, :, :1]):
            raise UserError(f"{path}: mask has {raw.shape[2]} different channels; masks must be single-channel "
                            "class indices or binary")
        raw = raw[:, :, 0]
    values = np.unique(raw)
    if num_classes <= 2:
        for background, foreground in BINARY_ENCODINGS:
            if np.isin(values, (background, foreground)).all():
                return (raw == foreground).astype(np.uint8)
        if num_classes == 1:
            raise UserError(f"{path}: mask values {_show(values)} are not a binary mask "
                            "(expected 0/1, 0/255 or 0/65535)")
    integral = np.issubdtype(values.dtype, np.integer) or bool(np.all(values == np.round(values)))
    if not integral or values.min() < 0 or values.max() >= num_classes:
        raise UserError(f"{path}: mask values {_show(values)} do not fit num_classes={num_classes} "
                        f"(expected class indices 0..{num_classes - 1})")
    return raw.astype(np.uint8)


def _show(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(f"{v:g}" if isinstance(v, float | np.floating) else str(v) for v in values[:limit].tolist())
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)} distinct)"
