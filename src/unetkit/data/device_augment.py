"""The device executor of data/augment.py's description: a whole batch of tensors at once, on its device.

Hand-written with torch ops rather than albumentations (one NumPy image at a time on the CPU, what a GPU waits for) or
kornia (a dependency for a dozen lines of `grid_sample`, slower than albumentations on the CPU here); one sampling
grid per image holds the affine transform and the elastic field together, so each image is resampled once, not once
per transform. Everything runs on CPU tensors too.

Each step gives, for the values it draws, the image albumentations gives (tests/data/test_device_augment.py): flips and
quarter turns are exact (non-square images turn by 0 or 180 degrees only: a quarter turn would change one image's
shape); intensity results are clipped to [0, 1]. Borders reflect about the edge pixels' centres (`align_corners`,
albumentations' BORDER_REFLECT_101), for masks and weight maps too (nearest neighbour, through the same grid): a mask
holds only labels it already had, and an object touching the border is reflected, never shifted out of existence.

Randomness, deterministic and thread-free: `batch_seed(seed, epoch, batch, rank)` seeds a CPU `torch.Generator` that
draws (B, 1 + number of ranges) uniforms per step, moved to the device in small copies. The two full-resolution fields
(elastic displacements, pixel noise) are drawn on the device by a generator seeded from the CPU one: the same (seed,
epoch, batch, rank) gives bit-identical batches on any CPU and the same draws on any CUDA GPU, but CPU and CUDA draw
different fields. Every Python branch reads the CPU draws, never a device tensor, so a batch queues its kernels
without waiting for the GPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from unetkit.data.augment import AugmentConfig, Op, describe
from unetkit.data.patches import reflected

Draws = dict[str, dict[str, torch.Tensor]]  # step name -> {"on": (B,) bool, value name -> (B,) float64}


def draw(ops: tuple[Op, ...], batch: int, height: int, width: int, generator: torch.Generator) -> tuple[Draws, int]:
    """Every step's per-image values for `batch` images of height x width, on the CPU, as the step applies
    them (shifts in whole pixels, odd blur sizes), and the seed of the full-resolution fields."""
    draws: Draws = {}
    for op in ops:
        u = torch.rand(batch, 1 + len(op.ranges), generator=generator, dtype=torch.float64)
        values = {"on": u[:, 0] < op.p}
        for column, (name, (low, high)) in enumerate(op.ranges.items(), 1):
            if isinstance(low, int) and isinstance(high, int):
                values[name] = (low + (u[:, column] * (high - low + 1)).floor()).clamp(max=high)
            else:
                values[name] = low + (high - low) * u[:, column]
        draws[op.name] = values
    if "rotate90" in draws and height != width:  # a quarter turn would change this image's shape
        draws["rotate90"]["turns"] = draws["rotate90"]["turns"] // 2 * 2
    if "affine" in draws:
        draws["affine"]["shift_x"] = (draws["affine"]["shift_x"] * width).trunc()
        draws["affine"]["shift_y"] = (draws["affine"]["shift_y"] * height).trunc()
    if "blur" in draws:
        draws["blur"]["ksize"] += 1 - draws["blur"]["ksize"] % 2
    return draws, int(torch.randint(0, 2**62, (1,), generator=generator))


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int, mode: str,
                  support: torch.Tensor | None = None) -> torch.Tensor:
    """x (N, C, H, W) float blurred per image by a separable Gaussian of sigma (N,) px, `radius` taps each side
    (`support` (N,): fewer for some images, as a 3-tap kernel beside a 5-tap one)."""
    n, c, h, w = x.shape
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma.to(x).view(-1, 1)) ** 2)
    if support is not None:
        kernel = kernel * (taps.abs() <= support.to(x).view(-1, 1))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (N * C, 2r + 1)
    mode = mode if mode != "reflect" or min(h, w) > radius else "replicate"
    flat = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode=mode)
    flat = F.conv2d(flat, kernel.view(n * c, 1, 1, -1), groups=n * c)
    flat = F.conv2d(flat, kernel.view(n * c, 1, -1, 1), groups=n * c)
    return flat.view(n, c, h, w)


def elastic_field(n: int, height: int, width: int, alpha: float, sigma: float, seed: int,
                  device: torch.device) -> torch.Tensor:
    """(n, 2, H, W) displacements (dx, dy) in pixels: the elastic step's field (`describe`), drawn on the device
    from `seed` (Philox on CUDA: the same draws on every CUDA GPU), smoothed on a grid coarser by s = sigma // 3
    (average-pooled noise, a Gaussian of sigma / s px, bilinear back): the field is smooth over sigma px anyway,
    and it costs 1/s^2 as much."""
    noise = torch.randn(n, 2, height, width, generator=torch.Generator(device=device).manual_seed(seed), device=device)
    noise = noise / noise.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    step = max(1, int(sigma // 3))
    if step > 1:
        noise = F.avg_pool2d(noise, step, ceil_mode=True)
    coarse = sigma / step
    field = gaussian_blur(noise, torch.full((n,), coarse, device=device), max(1, math.ceil(4 * coarse)), "replicate")
    if step > 1:
        field = F.interpolate(field, size=(field.shape[-2] * step, field.shape[-1] * step), mode="bilinear",
                              align_corners=False)[..., :height, :width]
    return field * alpha


def source_pixels(draws: Draws, chosen: torch.Tensor, height: int, width: int, device: torch.device,
                  field: torch.Tensor | None = None) -> torch.Tensor:
    """(n, H, W, 2) input pixel (x, y) each output pixel of the `chosen` images (n,) samples: output pixel p
    reads the input at S^-1 R^-1 (p + d(p) - c - t) + c, the elastic displacement d (`field` (n, 2, H, W), zero
    where an image has none) of the affine output undone through the affine map (zoom S, rotation R about the
    centre c, shift t); without the affine step S = R = 1, t = 0."""
    n = len(chosen)
    centre = torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=torch.float64)
    rows = torch.tensor([[1.0, 0.0, 0.0, 1.0, *centre]], dtype=torch.float64).repeat(n, 1)
    if "affine" in draws:  # rows of S^-1 R^-1 and the origin c + t, elementwise: not an (n, HW, 2) bmm
        d = {k: v[chosen] for k, v in draws["affine"].items()}
        angle = torch.deg2rad(d["rotate"])
        cos, sin = torch.cos(angle), torch.sin(angle)
        affine = torch.stack([cos / d["scale_x"], -sin / d["scale_x"], sin / d["scale_y"], cos / d["scale_y"],
                              centre[0] + d["shift_x"], centre[1] + d["shift_y"]], 1)
        rows = torch.where(d["on"][:, None], affine, rows)
    a, b, c, e, ox, oy = on_device(rows.float(), device).view(n, 6, 1, 1).unbind(1)
    qx = torch.arange(width, device=device, dtype=torch.float32).view(1, 1, width) - ox  # (n, 1, W)
    qy = torch.arange(height, device=device, dtype=torch.float32).view(1, height, 1) - oy  # (n, H, 1)
    if field is not None:
        qx, qy = qx + field[:, 0], qy + field[:, 1]
    cx, cy = centre.tolist()
    return torch.stack([a * qx + b * qy + cx, c * qx + e * qy + cy], dim=-1)


def on_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor on `device`, copied without blocking (from page-locked memory on CUDA)."""
    return (x.pin_memory() if device.type == "cuda" else x).to(device, non_blocking=True)


def _subset(x: torch.Tensor, on: torch.Tensor, step: Callable[..., torch.Tensor], *args: torch.Tensor) -> torch.Tensor:
    """x with step(x[i], args[i]) in place of the images i where `on` (a CPU (B,) bool) holds; args, CPU (B,)
    tensors, reach `step` as float32 (n, 1, 1, 1) on x's device."""
    if not bool(on.any()):
        return x
    index = on.nonzero().flatten()
    values = [on_device(a[index].float(), x.device).view(-1, 1, 1, 1) for a in args]
    index = on_device(index, x.device)
    return x.index_copy(0, index, step(x.index_select(0, index), *values))


def _turned(x: torch.Tensor, draws: Draws) -> torch.Tensor:
    """x (B, C, H, W) with each image flipped / turned as drawn; exact, no resampling."""
    for name, turn in (("hflip", lambda t: t.flip(-1)), ("vflip", lambda t: t.flip(-2))):
        if name in draws:
            x = _subset(x, draws[name]["on"], turn)
    if "rotate90" in draws:
        for k in range(1, 4):
            x = _subset(x, draws["rotate90"]["on"] & (draws["rotate90"]["turns"] == k),
                        lambda t, k=k: torch.rot90(t, k, dims=(-2, -1)))
    return x


def _warped(images: torch.Tensor, labels: list[torch.Tensor], draws: Draws, ops: tuple[Op, ...],
            field_seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """images (bilinear) and label maps (nearest) resampled through each warped image's one grid."""
    warped = sum((draws[name]["on"] for name in ("affine", "elastic") if name in draws), torch.zeros(len(images)))
    if not bool(warped.any()):
        return images, labels
    height, width, device = images.shape[-2], images.shape[-1], images.device
    chosen = warped.nonzero().flatten()
    field = None
    if "elastic" in draws and bool(draws["elastic"]["on"].any()):
        settings = next(op.settings for op in ops if op.name == "elastic")
        elastic = draws["elastic"]["on"][chosen]
        index = on_device(elastic.nonzero().flatten(), device)
        field = torch.zeros(len(chosen), 2, height, width, device=device).index_copy(0, index, elastic_field(
            len(index), height, width, settings["alpha"], settings["sigma"], field_seed, device))
    # pixels -> grid_sample's [-1, 1] (align_corners: -1 and 1 are the edge pixels' centres)
    grid = source_pixels(draws, chosen, height, width, device, field)
    grid = grid * torch.tensor([2 / max(width - 1, 1), 2 / max(height - 1, 1)], device=device) - 1
    index = on_device(chosen, device)

    def sample(x: torch.Tensor, mode: str) -> torch.Tensor:
        out = F.grid_sample(x.index_select(0, index).float(), grid, mode=mode, padding_mode="reflection", align_corners=True)
        return x.index_copy(0, index, out.to(x.dtype))

    return sample(images, "bilinear"), [sample(t, "nearest") for t in labels]


def pixel_noise(shape: torch.Size, device: torch.device, field_seed: int) -> torch.Tensor:
    """N(0, 1) per pixel for the images the noise step touches (shape (n, C, H, W)), on `device`."""
    return torch.randn(shape, generator=torch.Generator(device=device).manual_seed(field_seed + 1), device=device)


def augment_batch(config: AugmentConfig, images: torch.Tensor, masks: torch.Tensor, weights: torch.Tensor | None,
                  seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One random draw per image of `describe(config)`, the same for its image, mask and weight map: images (B, C, H, W)
    float32 in [0, 1]; masks (B, H, W) or (B, K, H, W) labels; weights (B, H, W) or None; all on one device, returned on
    it, in their dtypes. Steps no image drew are skipped: with every p = 0 the tensors come back unchanged."""
    ops = describe(config)
    batch, _, height, width = images.shape
    draws, field_seed = draw(ops, batch, height, width, torch.Generator().manual_seed(seed))
    labels = [masks if masks.dim() == 4 else masks.unsqueeze(1)] + ([weights.unsqueeze(1)] if weights is not None else [])
    images, labels = _turned(images, draws), [_turned(t, draws) for t in labels]
    images, labels = _warped(images, labels, draws, ops, field_seed)
    intensity = {
        "brightness_contrast": (lambda x, c, b: (x * (1 + c) + b).clamp(0, 1), "contrast", "brightness"),
        "gamma": (lambda x, g: x.pow(g), "gamma"),
        "noise": (lambda x, s: (x + s * pixel_noise(x.shape, x.device, field_seed)).clamp(0, 1), "std"),
        "blur": (lambda x, s, k: gaussian_blur(x, s.flatten(), 2, "reflect", (k.flatten() - 1) / 2), "sigma", "ksize"),
    }
    for name, (step, *values) in intensity.items():
        if name in draws:
            images = _subset(images, draws[name]["on"], step, *(draws[name][v] for v in values))
    masks = labels[0] if masks.dim() == 4 else labels[0].squeeze(1)
    return images, masks, (labels[1].squeeze(1) if weights is not None else None)


def pad_crop_batch(x: torch.Tensor, pad_to: int, crop: int, ys: np.ndarray, xs: np.ndarray) -> torch.Tensor:
    """The device executor of `crop_op`: x (B, ..., H, W) reflect-padded to pad_to (centred) and cut at (ys, xs)
    (B,), as data/augment.py::pad_crop cuts arrays, by one gather of mirrored indices: no padded copy."""
    rows, cols = (reflected(start[:, None] + np.arange(crop) - (pad_to - size) // 2, size)
                  for start, size in ((ys, x.shape[-2]), (xs, x.shape[-1])))
    index = (np.arange(len(x))[:, None, None], rows[:, :, None], cols[:, None, :])
    b, r, c = (on_device(torch.from_numpy(i), x.device) for i in index)
    window = x[b, ..., r, c]  # indices apart: (B, crop, crop) first, then any channels
    return window if x.dim() == 3 else window.movedim(-1, 1)
