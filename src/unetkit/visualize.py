"""Pictures a person looks at: training curves, image/truth/prediction sheets, overlays; matplotlib
with the Agg backend (no display needed), every file written atomically. pyplot is imported by the
functions that draw figures: the overlays (prediction, review) are NumPy alone and need not wait for it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from unetkit.data.io import dtype_range
from unetkit.fileio import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Class colours for overlays: class 1 red, then distinct hues.
PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60]], dtype=np.uint8)


def class_colours(classes: Sequence[dict], num_classes: int) -> np.ndarray:
    """(max(K, 2), 3) uint8 colours of a model's classes: those of its classes.yaml where it names a
    colour for every class (what the labeller chose), else PALETTE's."""
    named = [c.get("color") for c in classes]
    if named and all(named):
        return np.array(named, np.uint8)
    return PALETTE[np.minimum(np.arange(max(num_classes, 2)), len(PALETTE) - 1)]


def display_gray(image: np.ndarray) -> np.ndarray:
    """(H, W, C) image of any dtype -> (H, W, 3) uint8 for display (first three channels or gray)."""
    scaled = image.astype(np.float32) / dtype_range(image.dtype)
    if image.dtype.kind == "f":  # floats carry their own range
        low, high = float(scaled.min()), float(scaled.max())
        scaled = (scaled - low) / (high - low or 1.0)
    rgb = scaled[:, :, :3] if scaled.shape[2] >= 3 else np.repeat(scaled[:, :, :1], 3, axis=2)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def label_map(mask: np.ndarray, channel_axis: int = 0) -> np.ndarray:
    """A multi-label mask ((K, H, W) by default) as one (H, W) map for display: the highest label set, 1-based."""
    if mask.ndim == 2:
        return mask
    labels = np.moveaxis(mask, channel_axis, 0) > 0
    weights = np.arange(1, len(labels) + 1, dtype=np.uint8)[:, None, None]
    return (labels * weights).max(0).astype(np.uint8)


def blend_overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45, palette: np.ndarray = PALETTE) -> np.ndarray:
    """Colour the classes of `mask` (H, W) over `image` (H, W, C) with `palette` (n, 3): (H, W, 3) uint8."""
    rgb = display_gray(image).astype(np.float32)
    colours = palette[np.minimum(mask, len(palette) - 1)].astype(np.float32)
    painted = mask > 0
    rgb[painted] = (1 - alpha) * rgb[painted] + alpha * colours[painted]
    return rgb.astype(np.uint8)


def plot_curves(history: Sequence[dict[str, float]], path: str | os.PathLike[str] | None = None) -> Figure:
    """Loss (train/val) and validation metrics per epoch, two panels side by side; written to `path` if given."""
    epochs = [row["epoch"] for row in history]
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(11, 4))
    left.plot(epochs, [r["train_loss"] for r in history], "o-", label="train loss")
    left.plot(epochs, [r["val_loss"] for r in history], "o-", label="validation loss")
    left.set(xlabel="epoch", ylabel="loss")
    left.legend()
    for key, label in (("val_iou", "IoU"), ("val_dice", "Dice"), ("val_map", "TGS mAP")):
        right.plot(epochs, [r[key] for r in history], "o-", label=f"validation {label}")
    right.set(xlabel="epoch", ylim=(0, 1))
    right.legend(loc="lower right")
    for axis in (left, right):
        axis.grid(alpha=0.3)
    return _finish(fig, path)


def overlay_sheet(images: Sequence[np.ndarray], truths: Sequence[np.ndarray], predictions: Sequence[np.ndarray],
                  titles: Sequence[str], path: str | os.PathLike[str] | None = None) -> Figure:
    """One row per example: image, truth overlay, prediction overlay; written to `path` if given."""
    fig, axes = pyplot().subplots(len(images), 3, figsize=(7.5, 2.5 * len(images)), squeeze=False)
    for row, (image, truth, pred, title) in enumerate(zip(images, truths, predictions, titles)):
        panels = (display_gray(image), blend_overlay(image, truth), blend_overlay(image, pred))
        for col, (panel, name) in enumerate(zip(panels, ("image", "truth", "prediction"))):
            axes[row, col].imshow(panel, interpolation="nearest")
            axes[row, col].set_title(f"{title}: {name}" if col == 0 else name, fontsize=8)
            axes[row, col].axis("off")
    return _finish(fig, path)


def _finish(fig: Figure, path: str | os.PathLike[str] | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        pyplot().close(fig)
    return fig


def pyplot() -> Any:
    """matplotlib.pyplot with the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
