"""Augmentation: one description (`describe`: steps, probabilities, ranges) and its CPU executor.

Two executors run it: `Augmenter` here, albumentations on one NumPy image at a time on the CPU (masks and weight maps
nearest-neighbour, images bilinear, with the same draw), and data/device_augment.py, torch ops on a whole batch on its
device; both draw each value from the same range with the same probability and give the same image for the same drawn
values (tests/data/test_device_augment.py). albumentations rather than kornia on the CPU: several times its throughput
for `strong` on TGS-sized batches (benchmarks/RESULTS.md).

Presets: `seed` = horizontal flips (the TGS kernel's); `d4` = the square's eight symmetries, for data without an up and
down; `strong` = flips, affine, intensity and elastic deformation as in the U-Net paper. `auto` leaves the symmetries
to the training plan (training/plan.py), which looks at the masks. Vertical flips and quarter turns are off in `seed`
and `strong` (seismic images have an up and a down) and, like every magnitude and probability, switched on from the
config (`data.augment_params: {p_vflip: 0.5, p_rotate90: 0.5}`).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unetkit.config import AUTO, _shown
from unetkit.errors import UserError


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities (p_*) and magnitudes of each augmentation; p = 0 switches one off."""

    p_hflip: float = 0.5
    p_vflip: float = 0.0
    p_rotate90: float = 0.0
    p_affine: float = 0.0
    scale: float = 0.1  # zoom in [1 - scale, 1 + scale]
    rotate_deg: float = 15.0
    shift: float = 0.05  # fraction of the side
    p_elastic: float = 0.0
    elastic_alpha: float = 30.0  # displacement magnitude (pixels, before smoothing)
    elastic_sigma: float = 6.0  # smoothness of the displacement field (pixels)
    p_brightness_contrast: float = 0.0
    brightness: float = 0.15
    contrast: float = 0.15
    p_gamma: float = 0.0
    p_noise: float = 0.0
    noise_std: float = 0.03  # of the [0, 1] range
    p_blur: float = 0.0


PRESETS: dict[str, AugmentConfig | None] = {
    "none": None,
    "seed": AugmentConfig(),
    "flips": AugmentConfig(p_vflip=0.5),
    "d4": AugmentConfig(p_vflip=0.5, p_rotate90=0.5),
    "strong": AugmentConfig(p_hflip=0.5, p_vflip=0.0, p_rotate90=0.0, p_affine=0.6, p_elastic=0.3,
                            p_brightness_contrast=0.5, p_gamma=0.3, p_noise=0.2, p_blur=0.1),
}


def batch_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    """The seed of one batch's draws, for albumentations (data/loader.py) and for the device pipeline
    (data/device_augment.py) alike: a batch's augmentation depends on nothing but these four."""
    return int(np.random.SeedSequence((seed, epoch, batch, rank)).generate_state(1)[0])


PRESET_NAMES = (*PRESETS, AUTO)  # what data.augment may name


def augment_config(preset: str, params: dict[str, Any] | None = None) -> AugmentConfig | None:
    """The preset's settings with `params` replaced; unknown presets and keys name themselves.
    `auto` is checked as the `seed` preset (the plan replaces it before training)."""
    if preset not in PRESETS and preset != AUTO:
        raise UserError(f"config field 'data.augment': {_shown(preset)} is not one of {', '.join(PRESET_NAMES)}")
    base = PRESETS["seed" if preset == AUTO else preset]
    if not params:
        return base
    known = {f.name for f in dataclasses.fields(AugmentConfig)}
    for key, value in params.items():
        if key not in known:
            raise UserError(f"config field 'data.augment_params.{str(key)[:200]}' is unknown (known: {', '.join(sorted(known))})")
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise UserError(f"config field 'data.augment_params.{key}': {_shown(value)} must be a finite number >= 0")
        upper = 0.99 if key in ("scale", "shift") else 1.0 if key.startswith("p_") or key in (
            "noise_std", "brightness", "contrast") else None
        if (upper is not None and value > upper) or (key in ("elastic_sigma", "elastic_alpha") and value == 0):
            raise UserError(f"config field 'data.augment_params.{key}': {_shown(value)} is out of range"
                            + (f" (at most {upper})" if upper is not None else " (must be > 0)"))
    return dataclasses.replace(base or AugmentConfig(p_hflip=0.0), **{k: float(v) for k, v in params.items()})


@dataclass(frozen=True)
class Op:
    """One step of an augmentation, as both executors read it: applied to each image with probability
    `p`; each of `ranges` drawn uniformly per image (int bounds: an integer, both ends included);
    `settings` fixed."""

    name: str
    p: float
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    settings: dict[str, float] = field(default_factory=dict)


def describe(config: AugmentConfig) -> tuple[Op, ...]:
    """The augmentation as data, in the order it is applied; steps with p = 0 are left out. Each drawn value
    means what it means to albumentations: turns: quarter turns counter-clockwise. shift_x, shift_y: fractions
    of the width and height, truncated to whole pixels. scale_x, scale_y: zoom of each axis. rotate: degrees;
    output pixels come from input S^-1 R^-1 (p - c - t) + c with R = [[cos, sin], [-sin, cos]], c = ((W-1)/2,
    (H-1)/2). elastic: a displacement field, N(0, 1) per pixel and axis, divided by its max |value|, smoothed
    by a Gaussian of `sigma` px, times `alpha`. contrast: the factor is 1 + contrast. gamma: x ** gamma.
    std: of Gaussian pixel noise. ksize: Gaussian blur taps, even sizes one more."""
    c = dataclasses.replace(config, **{f.name: float(getattr(config, f.name)) for f in dataclasses.fields(config)})
    shift, scale = (-c.shift, c.shift), (1 - c.scale, 1 + c.scale)  # floats: int bounds mean whole numbers
    ops = (Op("hflip", c.p_hflip), Op("vflip", c.p_vflip), Op("rotate90", c.p_rotate90, {"turns": (0, 3)}),
           Op("affine", c.p_affine, {"shift_x": shift, "shift_y": shift, "scale_x": scale, "scale_y": scale,
                                     "rotate": (-c.rotate_deg, c.rotate_deg)}),
           Op("elastic", c.p_elastic, settings={"alpha": c.elastic_alpha, "sigma": c.elastic_sigma}),
           Op("brightness_contrast", c.p_brightness_contrast,
              {"contrast": (-c.contrast, c.contrast), "brightness": (-c.brightness, c.brightness)}),
           Op("gamma", c.p_gamma, {"gamma": (0.8, 1.2)}),
           Op("noise", c.p_noise, {"std": (c.noise_std / 2, c.noise_std)}),
           Op("blur", c.p_blur, {"sigma": (0.5, 3.0), "ksize": (3, 5)}))
    return tuple(op for op in ops if op.p > 0)


def crop_op(pad_to: int, crop: int) -> Op:
    """The `pad_crop` size policy's step: reflect-pad to pad_to x pad_to (centred, as the network pads at
    prediction), then the crop x crop window at (top, left)."""
    return Op("pad_crop", 1.0, {"top": (0, pad_to - crop), "left": (0, pad_to - crop)}, {"pad_to": pad_to, "crop": crop})


def warp_margin(ops: tuple[Op, ...], patch: int) -> int:
    """Pixels to read around a `patch`-sized crop so that the warps among `ops` find image everywhere: a
    rotated, zoomed-out, shifted square reaches half-side * (cos + sin) / min(scale) + max(shift) * side;
    the smoothed elastic displacement stays below alpha / sigma pixels. 0 without warps."""
    reach = 0.0
    for op in ops:
        if op.name == "affine":
            angle = math.radians(max(abs(v) for v in op.ranges["rotate"]))
            zoom = min(*op.ranges["scale_x"], *op.ranges["scale_y"])
            shift = max(abs(v) for v in (*op.ranges["shift_x"], *op.ranges["shift_y"]))
            reach += patch / 2 * ((math.cos(angle) + math.sin(angle)) / zoom - 1) + shift * patch
        elif op.name == "elastic":
            reach += op.settings["alpha"] / max(op.settings["sigma"], 1e-6)
    return max(0, math.ceil(reach))


def crop_windows(n: int, pad_to: int, crop: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The (top, left) of n windows of `crop_op(pad_to, crop)`, (n,) each, drawn from `rng` for both executors."""
    ys, xs = (rng.integers(low, high + 1, size=n) for low, high in crop_op(pad_to, crop).ranges.values())
    return ys, xs


def pad_crop(images: np.ndarray, masks: np.ndarray, weights: np.ndarray | None, pad_to: int, crop: int,
             ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """`crop_op(pad_to, crop)` on each (N, H, W, ...) array: the window at (ys[i], xs[i]), the same for image i,
    its mask and weights. NumPy slices rather than albumentations' PadIfNeeded + RandomCrop: the windows come
    from the batch's own stream (`crop_windows`), and masks and weight maps of any layout go along."""
    height, width = images.shape[1:3]
    if max(height, width) > pad_to:
        raise ValueError(f"images of {width}x{height} do not fit data.pad_to {pad_to}")
    top, left = (pad_to - height) // 2, (pad_to - width) // 2
    sides = ((0, 0), (top, pad_to - height - top), (left, pad_to - width - left))

    def cropped(array: np.ndarray) -> np.ndarray:
        padded = np.pad(array, sides + ((0, 0),) * (array.ndim - 3), mode="reflect")
        return np.stack([a[y : y + crop, x : x + crop] for a, y, x in zip(padded, ys, xs)])

    return cropped(images), cropped(masks), cropped(weights) if weights is not None else None


def albumentations_step(op: Op) -> Any:
    import albumentations as A  # noqa: N812 - the library's own idiom
    import cv2

    r, s, reflect = op.ranges, op.settings, {"border_mode": cv2.BORDER_REFLECT_101}
    steps = {
        "hflip": lambda: A.HorizontalFlip(p=op.p),
        "vflip": lambda: A.VerticalFlip(p=op.p),
        "rotate90": lambda: A.RandomRotate90(p=op.p),
        "affine": lambda: A.Affine(scale={"x": r["scale_x"], "y": r["scale_y"]}, rotate=r["rotate"],
                                   translate_percent={"x": r["shift_x"], "y": r["shift_y"]}, p=op.p, **reflect),
        "elastic": lambda: A.ElasticTransform(alpha=s["alpha"], sigma=s["sigma"], p=op.p, **reflect),
        "brightness_contrast": lambda: A.RandomBrightnessContrast(brightness_limit=r["brightness"],
                                                                  contrast_limit=r["contrast"], p=op.p),
        "gamma": lambda: A.RandomGamma(gamma_limit=tuple(round(v * 100) for v in r["gamma"]), p=op.p),
        "noise": lambda: A.GaussNoise(std_range=r["std"], p=op.p),
        "blur": lambda: A.GaussianBlur(blur_limit=r["ksize"], sigma_limit=r["sigma"], p=op.p),
    }
    return steps[op.name]()


class Augmenter:
    """The CPU executor: one random draw per sample of (image, mask[, weights]) through albumentations; one
    pipeline per thread (its random state is its own), reseeded per call: the draws depend on the seed alone,
    whichever thread asks."""

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config
        self._local = threading.local()

    @property
    def pipeline(self) -> Any:
        if not hasattr(self._local, "pipeline"):
            import albumentations as A  # noqa: N812 - the library's own idiom

            self._local.pipeline = A.Compose([albumentations_step(op) for op in describe(self.config)],
                                             additional_targets={"weights": "mask"}, seed=0)
        return self._local.pipeline

    def __call__(self, images: np.ndarray, masks: np.ndarray, weights: np.ndarray | None,
                 seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """images (N, H, W, C) float32 in [0, 1], masks (N, H, W) uint8, weights (N, H, W) float32 or None."""
        self.pipeline.set_random_seed(seed)
        out = [self.pipeline(image=images[i], mask=masks[i], **({} if weights is None else {"weights": weights[i]}))
               for i in range(len(images))]
        return (np.stack([o["image"] if o["image"].ndim == 3 else o["image"][:, :, None] for o in out]),
                np.stack([o["mask"] for o in out]), None if weights is None else np.stack([o["weights"] for o in out]))
