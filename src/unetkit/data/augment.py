"""Augmentation applied identically to images, masks and weight maps, through albumentations.

albumentations rather than kornia, by measured throughput: the `strong` pipeline below on
batches of 32 TGS-sized (101 x 101) images ran at 1475 images/s with albumentations and
398 images/s with kornia 0.9 on the same 2 CPU cores (scripted comparison, 10 batches
each), while the seed U-Net trains at ~28 images/s there; masks and weight maps are warped
with nearest-neighbour interpolation, images with bilinear, all with the same parameters.

Presets: `none`; `seed` = random horizontal flips (the TGS kernel's); `flips` = horizontal and
vertical flips; `d4` = flips and 90-degree rotations (all eight symmetries of the square, for
data without an up and down); `strong` = horizontal flips, affine (scale/rotate/shift), elastic
deformation as in the U-Net paper, brightness/contrast/gamma, Gaussian noise and blur. `auto`
leaves the symmetries to the training plan (training/plan.py), which looks at the masks. Vertical
flips and 90-degree rotations are off in `seed` and `strong` (seismic images have an up and a
down) and switched on, like every other magnitude and probability, from the config
(`data.augment_params: {p_vflip: 0.5, p_rotate90: 0.5}`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
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
        upper = 1.0 if key.startswith("p_") or key in ("noise_std", "brightness", "contrast") else None
        if key in ("scale", "shift"):
            upper = 0.99
        if (upper is not None and value > upper) or (key in ("elastic_sigma", "elastic_alpha") and value == 0):
            raise UserError(f"config field 'data.augment_params.{key}': {_shown(value)} is out of range"
                            + (f" (at most {upper})" if upper is not None else " (must be > 0)"))
    return dataclasses.replace(base or AugmentConfig(p_hflip=0.0), **{k: float(v) for k, v in params.items()})


def pad_crop(images: np.ndarray, masks: np.ndarray, weights: np.ndarray | None, pad_to: int, crop: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The `pad_crop` size policy's training view: each (N, H, W, ...) array reflect-padded to
    pad_to x pad_to, centred as the network pads at prediction, then one random crop x crop window
    per image (the same window for its image, mask and weights).

    Done with NumPy slices rather than albumentations' PadIfNeeded + RandomCrop: the window is
    drawn from the batch's own generator, and masks and weight maps of any layout go along.
    """
    height, width = images.shape[1:3]
    if max(height, width) > pad_to:
        raise ValueError(f"images of {width}x{height} do not fit data.pad_to {pad_to}")
    top, left = (pad_to - height) // 2, (pad_to - width) // 2
    sides = ((0, 0), (top, pad_to - height - top), (left, pad_to - width - left))

    def padded(array: np.ndarray) -> np.ndarray:
        return np.pad(array, sides + ((0, 0),) * (array.ndim - 3), mode="reflect")

    ys = rng.integers(0, pad_to - crop + 1, size=len(images))
    xs = rng.integers(0, pad_to - crop + 1, size=len(images))

    def cropped(array: np.ndarray) -> np.ndarray:
        return np.stack([a[y : y + crop, x : x + crop] for a, y, x in zip(padded(array), ys, xs)])

    return cropped(images), cropped(masks), cropped(weights) if weights is not None else None


class Augmenter:
    """Applies one random draw per sample to (image, mask[, weights]); reseeded per epoch for resume."""

    def __init__(self, config: AugmentConfig) -> None:
        import albumentations as A  # noqa: N812 - the library's own idiom
        import cv2

        c = config
        reflect = {"border_mode": cv2.BORDER_REFLECT_101}
        steps = [
            A.HorizontalFlip(p=c.p_hflip),
            A.VerticalFlip(p=c.p_vflip),
            A.RandomRotate90(p=c.p_rotate90),
            A.Affine(scale=(1 - c.scale, 1 + c.scale), rotate=(-c.rotate_deg, c.rotate_deg),
                     translate_percent=(-c.shift, c.shift), p=c.p_affine, **reflect),
            A.ElasticTransform(alpha=c.elastic_alpha, sigma=c.elastic_sigma, p=c.p_elastic, **reflect),
            A.RandomBrightnessContrast(brightness_limit=c.brightness, contrast_limit=c.contrast,
                                       p=c.p_brightness_contrast),
            A.RandomGamma(gamma_limit=(80, 120), p=c.p_gamma),
            A.GaussNoise(std_range=(c.noise_std / 2, c.noise_std), p=c.p_noise),
            A.GaussianBlur(blur_limit=(3, 5), p=c.p_blur),
        ]
        self.pipeline = A.Compose([step for step in steps if step.p > 0],
                                  additional_targets={"weights": "mask"}, seed=0)

    def reseed(self, seed: int) -> None:
        self.pipeline.set_random_seed(seed)

    def __call__(self, images: np.ndarray, masks: np.ndarray,
                 weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """images (N, H, W, C) float32 in [0, 1], masks (N, H, W) uint8, weights (N, H, W) float32 or None."""
        out_images, out_masks, out_weights = [], [], []
        for i in range(len(images)):
            targets = {"image": images[i], "mask": masks[i]}
            if weights is not None:
                targets["weights"] = weights[i]
            result = self.pipeline(**targets)
            image = result["image"]
            out_images.append(image if image.ndim == 3 else image[:, :, None])
            out_masks.append(result["mask"])
            if weights is not None:
                out_weights.append(result["weights"])
        return (np.stack(out_images), np.stack(out_masks), np.stack(out_weights) if weights is not None else None)
