"""Scenes only the tests train on: the U-Net paper's touching cells and a three-class set, as folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from unetkit.data.io import write_png
from unetkit.data.synthetic import smooth_noise, synthetic_example


def synthetic_cells(index: int, *, size: int = 64, seed: int = 0, cells: int = 14) -> tuple[np.ndarray, np.ndarray]:
    """Densely packed touching cells, the U-Net paper's case: image (size, size) uint8, mask 0/1.

    Cells are bright textured discs, many touching; where two meet the image shows only a
    faint darker membrane while the mask separates them by a 2-px background line, so a model
    must learn the separations to score well. Brightness and contrast vary per image.
    """
    rng = np.random.default_rng((seed, index, 7))
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    centres = rng.uniform(size * 0.1, size * 0.9, (cells, 2))
    radii = rng.uniform(size * 0.09, size * 0.14, cells)
    distance = np.stack([np.hypot(y - cy, x - cx) - r for (cy, cx), r in zip(centres, radii)])  # < 0 inside
    nearest = distance.argmin(0)
    inside = distance.min(0) < 0
    # A pixel lies on a border when a pixel within 1 step belongs to another cell.
    border = np.zeros_like(inside)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            shifted = np.roll(nearest, (dy, dx), axis=(0, 1))
            border |= np.roll(inside, (dy, dx), axis=(0, 1)) & (shifted != nearest)
    mask = inside & ~border
    texture = smooth_noise(rng, size, sigma=1.5)
    image = 0.25 + 0.08 * smooth_noise(rng, size, sigma=4.0)
    image = np.where(inside, 0.62 + 0.08 * texture, image)
    image = np.where(inside & border, image - 0.12, image)  # faint membrane between touching cells
    image += 0.05 * rng.standard_normal((size, size))
    image = 0.5 + (image - 0.5) * rng.uniform(0.6, 1.4) + rng.uniform(-0.12, 0.12)  # microscopes differ
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), mask.astype(np.uint8)


def synthetic_classes(index: int, *, size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes: layered background (0), calm bodies (1), bright speckled bodies (2); mask = indices."""
    rng = np.random.default_rng((seed, index, 3))
    image, _ = synthetic_example(index, size=size, seed=seed, empty_fraction=1.0)
    signal = image.astype(np.float64) / 255
    mask = np.zeros((size, size), np.uint8)
    for cls, (level, speckle) in ((1, (0.5, 0.02)), (2, (0.85, 0.12))):
        field = smooth_noise(rng, size, sigma=size / 7)
        body = field > np.quantile(field, 1 - rng.uniform(0.1, 0.3))
        mask[body] = cls
        signal[body] = level + speckle * rng.standard_normal(int(body.sum()))
    return (np.clip(signal, 0, 1) * 255).astype(np.uint8), mask


def write_examples(out_dir: str | os.PathLike[str], examples: list[tuple[np.ndarray, np.ndarray]], *,
                   prefix: str = "syn", mask_scale: int = 255) -> Path:
    """Write (image, mask) pairs as images/<prefix>_NNNNN.png and masks/<prefix>_NNNNN.png (mask x mask_scale)."""
    root = Path(out_dir)
    for index, (image, mask) in enumerate(examples):
        name = f"{prefix}_{index:05d}.png"
        write_png(root / "images" / name, image)
        write_png(root / "masks" / name, (mask * mask_scale).astype(np.uint8))
    return root
