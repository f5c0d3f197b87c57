"""The embedded synthetic data set: seismic-like images with salt-like bodies, deterministic by seed.

It stands in for TGS Salt wherever the real data is absent (the demo, the tests, a user's first try): 8-bit gray images
of tilted, warped sedimentary layers with noise, and smooth blob-shaped bodies of varying coverage whose texture is
calmer than the layers around them; about a third of the masks are empty, as in TGS. It is written in the same folder
layout users bring (images/*.png + masks/*.png, masks 0/255).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from unetkit.data.io import write_png
from unetkit.data.memory import SYNTH_BYTES_PER_PIXEL, check_side_fits
from unetkit.errors import UserError

MIN_SIZE = 8  # smaller images cannot show layers and a body


def smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """White noise low-passed by a Gaussian of `sigma` pixels (via FFT), scaled to unit std."""
    response = np.exp(-2 * (np.pi * sigma) ** 2 * (np.fft.fftfreq(size)[:, None] ** 2 + np.fft.rfftfreq(size)[None, :] ** 2))
    field = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((size, size))) * response, s=(size, size))
    return (field - field.mean()) / (field.std() + 1e-12)


def synthetic_example(index: int, *, size: int = 101, seed: int = 0,
                      empty_fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Image (size, size) uint8 and mask (size, size) uint8 0/255 of example `index`."""
    rng = np.random.default_rng((seed, index))
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    angle, period = rng.uniform(-0.4, 0.4), rng.uniform(5.0, 12.0)
    warp = smooth_noise(rng, size, sigma=size / 8) * rng.uniform(1.0, 4.0)
    depth_axis = y * np.cos(angle) + x * np.sin(angle) + warp
    layers = np.sin(2 * np.pi * depth_axis / period + rng.uniform(0, 2 * np.pi))
    layers *= 0.8 + 0.2 * smooth_noise(rng, size, sigma=size / 10).clip(-1.5, 1.5) / 1.5
    background = 0.45 * layers + 0.15 * smooth_noise(rng, size, sigma=2.0)

    mask = np.zeros((size, size), dtype=bool)
    if rng.random() >= empty_fraction:
        field = smooth_noise(rng, size, sigma=size / rng.uniform(5.0, 9.0))
        mask = field > np.quantile(field, 1.0 - rng.uniform(0.03, 0.9))  # coverage
    body = 0.12 * smooth_noise(rng, size, sigma=1.5) + 0.1 * layers + rng.uniform(-0.15, 0.15)

    signal = np.where(mask, body, background) + 0.06 * rng.standard_normal((size, size))
    signal += rng.uniform(-0.1, 0.1)  # brightness varies from image to image
    image = np.clip(127.5 + 127.5 * signal / 1.2, 0, 255).astype(np.uint8)
    return image, mask.astype(np.uint8) * 255


def generate_synthetic(out_dir: str | os.PathLike[str], n: int, *, size: int = 101, seed: int = 0,
                       empty_fraction: float = 0.3, prefix: str = "syn") -> Path:
    """`n` examples in out_dir/images and /masks, all arguments checked before the first write (`unetkit synth` relies on it)."""
    root = Path(out_dir)
    check_synthetic_args(root, n, size=size, seed=seed, empty_fraction=empty_fraction)
    for index in range(n):
        image, mask = synthetic_example(index, size=size, seed=seed, empty_fraction=empty_fraction)
        name = f"{prefix}_{index:05d}.png"
        write_png(root / "images" / name, image)
        write_png(root / "masks" / name, mask)
    return root


def check_synthetic_args(root: Path, n: int, *, size: int, seed: int, empty_fraction: float = 0.3) -> None:
    """Refuse a count, size, seed or empty fraction that cannot make a synthetic set, before any file exists."""
    wholes = ((n, 1, "the number of pairs (n, --n) must be at least 1"),
              (size, MIN_SIZE, f"the image size (--size) must be at least {MIN_SIZE} pixels"),
              (seed, 0, "the seed (--seed) must be a whole number of at least 0"))
    problems = [f"{text}, got {value}" for value, low, text in wholes
                if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low]
    if not 0.0 <= empty_fraction <= 1.0:
        problems.append(f"empty_fraction must lie in [0, 1], got {empty_fraction}")
    if problems:
        raise UserError(f"{root}: cannot make a synthetic set: {'; '.join(problems)}")
    check_side_fits("--size", int(size), SYNTH_BYTES_PER_PIXEL, "making one synthetic image")
    # new or empty folders only: a file already there may be a user's own (syn_00000.png is not ours by its name)
    if root.exists() and not root.is_dir():
        raise UserError(f"{root}: exists and is not a folder; choose another --out")
    for folder in (root / "images", root / "masks"):
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise UserError(f"{folder}: exists and is not a plain folder; synth writes only into new or empty "
                            "folders: choose another --out")
        if folder.is_dir() and (first := min(folder.iterdir(), default=None)) is not None:
            raise UserError(f"{folder}: is not empty (holds {first.name}); synth writes only into new or empty "
                            "folders and never replaces a file: choose another --out")


def synthetic_large(index: int, *, side: int = 1024, seed: int = 0, classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A large-image scene: image (side, side) uint8, mask (side, side) class indices. Class 1: bright
    textured bodies (about 15% of the area); with `classes` 3, class 2: thin dark curvilinear lines, 2-4 px
    wide (like roads, vessels or cracks), over the bodies. The background varies slowly, so a patch must be
    read in its context: the brightness of a body varies from place to place."""
    rng = np.random.default_rng((seed, index, 11))
    image = 0.4 + 0.1 * smooth_noise(rng, side, sigma=side / 16) + 0.06 * smooth_noise(rng, side, sigma=2.0)
    field = smooth_noise(rng, side, sigma=24.0)
    bodies = field > np.quantile(field, 0.85)
    mask = bodies.astype(np.uint8)
    image[bodies] += 0.25 + 0.05 * smooth_noise(rng, side, sigma=1.5)[bodies]
    if classes >= 3:
        level = smooth_noise(rng, side, sigma=40.0)
        lines = np.abs(level) < 0.02 * np.hypot(*np.gradient(level)) * 40.0 * 1.5  # about 3 px wide
        mask[lines] = 2
        image[lines] = 0.15 + 0.03 * rng.standard_normal(int(lines.sum()))
    image += 0.05 * rng.standard_normal((side, side))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), mask


def write_large_synthetic(out_dir: str | os.PathLike[str], n: int, *, side: int = 4096, seed: int = 0,
                          classes: int = 2, block: int = 2048, prefix: str = "large") -> Path:
    """`n` large scenes as tiled TIFFs (images/ and masks/, masks as class indices), written band by band
    from `block`-sized pieces of `synthetic_large`: memory follows the block, not the side (20000^2 works)."""
    from unetkit.data.tiled_writer import TiledTiffWriter

    root = Path(out_dir)
    check_synthetic_args(root, n, size=side, seed=seed)
    for index in range(n):
        name = f"{prefix}_{index:05d}.tif"
        with (TiledTiffWriter(root / "images" / name, side, side, np.uint8) as image_writer,
              TiledTiffWriter(root / "masks" / name, side, side, np.uint8) as mask_writer):
            for y in range(0, side, block):
                pieces = [synthetic_large(index * 10_000 + (y // block) * 100 + x // block, side=block, seed=seed,
                                          classes=classes) for x in range(0, side, block)]
                image_writer.write(np.concatenate([p[0][:side - y] for p in pieces], axis=1)[:, :side])
                mask_writer.write(np.concatenate([p[1][:side - y] for p in pieces], axis=1)[:, :side])
    return root
