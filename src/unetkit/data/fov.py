"""Region masks (a field of view): the pixels a figure is scored on, one mask per labelled image.

Retinal and microscopy sets are scored inside a region: DRIVE's `fov/N.png` marks the camera's circular aperture,
and pixels outside it count in no figure. A region folder is paired with the images the way masks are
(data/naming.py): `DIR/ID.*`, or `DIR/ID_mask.*`; non-zero is inside.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from unetkit.data.dataset import LabelledSet
from unetkit.data.io import read_array
from unetkit.data.layout_hints import MASK_SUFFIX
from unetkit.data.naming import list_images
from unetkit.errors import UserError


def find_regions(fov_dir: str | os.PathLike[str], stems: Iterable[str]) -> dict[str, Path]:
    """The region mask of every stem, found in `fov_dir`; one missing is a UserError naming its image."""
    folder = Path(fov_dir)
    files = list_images(folder)
    found: dict[str, Path] = {}
    for stem in stems:
        if (path := files.get(stem) or files.get(stem + MASK_SUFFIX)) is None:
            raise UserError(f"{folder}: no region mask for image '{stem}' (expected {stem}.png or "
                            f"{stem}{MASK_SUFFIX}.png there, like its mask)")
        found[stem] = path
    return found


def read_region(path: str | os.PathLike[str], shape: tuple[int, ...]) -> np.ndarray:
    """The (H, W) bool region of `path` (non-zero in any channel is inside), checked against the image's shape."""
    region = read_array(path).any(axis=-1)
    if region.shape != tuple(shape[:2]):
        raise UserError(f"{path}: region mask is {region.shape[1]}x{region.shape[0]} but its image is "
                        f"{shape[1]}x{shape[0]} (width x height)")
    return region


def regions_for(data: LabelledSet, fov_dir: str | os.PathLike[str]) -> list[np.ndarray]:
    """The (H_i, W_i) region of every image of `data`, in order; a validation window (stem `ID@y,x`,
    data/patch_set.py) gets its part of its image's region."""
    bases = [stem.partition("@")[0] for stem in data.stems]
    found = find_regions(fov_dir, dict.fromkeys(bases))
    out = []
    for stem, base, mask in zip(data.stems, bases, data.masks):
        height, width = mask.shape[:2]
        if "@" not in stem:
            out.append(read_region(found[base], (height, width)))
            continue
        y, x = (int(v) for v in stem.partition("@")[2].split(","))
        region = read_array(found[base]).any(axis=-1)
        if region[y : y + height, x : x + width].shape != (height, width):
            raise UserError(f"{found[base]}: region mask is {region.shape[1]}x{region.shape[0]}, smaller than its image")
        out.append(region[y : y + height, x : x + width])
    return out
