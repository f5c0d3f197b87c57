"""Tiny images and a one-call import for the format tests; counts of each class in the written masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from unetkit.config import ImportConfig
from unetkit.data.importers import ImportResult, import_annotations
from unetkit.data.io import read_array

WIDTH, HEIGHT = 10, 8


def images(folder: Path, *names: str) -> Path:
    """WIDTH x HEIGHT gray images named `names` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(np.full((HEIGHT, WIDTH), 90, np.uint8)).save(folder / name)
    return folder


def run(fmt: str, annotations: Path, image_dir: Path, out: Path, **options: object) -> ImportResult:
    return import_annotations(ImportConfig(format=fmt, annotations=str(annotations), images_dir=str(image_dir),
                                           out_dir=str(out), **options))  # type: ignore[arg-type]


def counts(out: Path, stem: str) -> dict[int, int]:
    """{class index: pixels} of OUT/masks/STEM.png."""
    mask = read_array(out / "masks" / f"{stem}.png", palette_indices=True)[:, :, 0]
    values, numbers = np.unique(mask, return_counts=True)
    return {int(v): int(n) for v, n in zip(values, numbers)}
