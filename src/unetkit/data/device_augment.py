"""data/augment.py's augmentation, on a whole batch of tensors at once, on the tensors' device.

Hand-written with torch ops rather than taken from albumentations or kornia: albumentations
works on one NumPy image at a time on the CPU, which is what a GPU waits for; kornia would be a
dependency for a dozen lines of `grid_sample`, and was slower than albumentations on the CPU
here (data/augment.py); and one sampling grid per image that holds the affine transform and
the elastic field together resamples each image once, not once per transform. Everything runs
on CPU tensors too (the tests, and `benchmarks/gpu_throughput.py --device cpu`).

Semantics are AugmentConfig's, in albumentations' order and with its parameter ranges:
flips and 90-degree turns (exact: `flip`/`rot90`, no resampling; a batch of non-square images
turns by 0 or 180 degrees only, since a quarter turn would change one image's shape), affine
(zoom in [1 - scale, 1 + scale], rotation in +-rotate_deg, shift in +-shift of each side, about
the centre), elastic deformation (per-image Gaussian noise scaled to max |value| 1, smoothed by a
Gaussian of elastic_sigma px, times elastic_alpha px), brightness/contrast, gamma in [0.8, 1.2],
Gaussian noise (std in [noise_std / 2, noise_std]), Gaussian blur (kernel 3 or 5 px, OpenCV's
sigma for that kernel); intensity results are clipped to [0, 1] as albumentations clips floats.

Borders: images are sampled bilinearly with reflection about the edge pixels' centres
(`align_corners=True`, albumentations' BORDER_REFLECT_101). Masks and weight maps are sampled
with the same grid, nearest neighbour, also with reflection: every output pixel is a copy of one
input pixel, so a mask holds only labels it already had (no background invented at the border,
no interpolated class indices), and the label beside the reflected image content is the one that
belongs to it. An object touching the border is reflected, never shifted out of existence.

Randomness, deterministic and thread-free: `batch_seed(seed, epoch, batch, rank)` (the seed
data/loader.py gives albumentations) seeds a CPU `torch.Generator` that draws every per-image
parameter, (B, 19) numbers in a fixed order, whatever the p's are; they move to the device in
one small copy. The two full-resolution fields (elastic noise, pixel noise) are drawn on the
tensors' device, from a generator there seeded by the CPU generator: the same (seed, epoch,
batch, rank) gives bit-identical batches on any CPU, and the same draws on any CUDA GPU, but
CPU and CUDA draw different noise fields (flags, angles, shifts and the rest are the same).
Every Python branch (which images a step touches) reads the CPU draws, never a device tensor,
so a batch queues its kernels without waiting for the GPU.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from unetkit.data.augment import AugmentConfig


class Draws(NamedTuple):
    """Per-image parameters, (B,) CPU tensors: `on_*` says whether a step applies to the image."""

    on_hflip: torch.Tensor
    on_vflip: torch.Tensor
    turns: torch.Tensor  # quarter turns, 0..3 (0 when the step is off)
    on_affine: torch.Tensor
    scale: torch.Tensor
    angle: torch.Tensor  # radians
    shift: torch.Tensor  # (B, 2): x and y, in pixels
    on_elastic: torch.Tensor
    on_bc: torch.Tensor
    contrast: torch.Tensor  # multiplier
    brightness: torch.Tensor  # added
    on_gamma: torch.Tensor
    gamma: torch.Tensor
    on_noise: torch.Tensor
    noise_std: torch.Tensor
    on_blur: torch.Tensor
    blur_sigma: torch.Tensor
    blur_radius: torch.Tensor  # 1 or 2: OpenCV's 3- or 5-tap kernel
    field_seed: int  # seeds the device generator of the elastic and pixel noise fields


def draw(config: AugmentConfig, batch: int, height: int, width: int, generator: torch.Generator) -> Draws:
    """Every per-image parameter of a batch of `batch` images of height x width, on the CPU."""
    c = config
    u = torch.rand(batch, 19, generator=generator, dtype=torch.float64)
    field_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    lerp = lambda col, lo, hi: (lo + (hi - lo) * u[:, col]).float()  # noqa: E731 - one line per parameter
    turns = (u[:, 3] * 4).long().clamp(max=3) * (u[:, 2] < c.p_rotate90)
    if height != width:  # a quarter turn would change this image's shape: 0 or 180 degrees only
        turns = turns // 2 * 2
    kernel = torch.where(u[:, 18] < 0.5, 3.0, 5.0)
    return Draws(u[:, 0] < c.p_hflip, u[:, 1] < c.p_vflip, turns,
                 u[:, 4] < c.p_affine, lerp(5, 1 - c.scale, 1 + c.scale),
                 lerp(6, -c.rotate_deg, c.rotate_deg) * (math.pi / 180),
                 torch.stack([lerp(7, -c.shift, c.shift) * width, lerp(8, -c.shift, c.shift) * height], dim=1),
                 u[:, 9] < c.p_elastic,
                 u[:, 10] < c.p_brightness_contrast, lerp(11, 1 - c.contrast, 1 + c.contrast),
                 lerp(12, -c.brightness, c.brightness),
                 u[:, 13] < c.p_gamma, lerp(14, 0.8, 1.2),
                 u[:, 15] < c.p_noise, lerp(16, c.noise_std / 2, c.noise_std),
                 u[:, 17] < c.p_blur, (0.3 * ((kernel - 1) * 0.5 - 1) + 0.8).float(), ((kernel - 1) / 2).float(), field_seed)


def field_generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on `device` (Philox on CUDA, the same draws on every CUDA GPU for a seed)."""
    return torch.Generator(device=device).manual_seed(seed)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int, mode: str,
                  support: torch.Tensor | None = None) -> torch.Tensor:
    """x (N, C, H, W) float blurred per image by a separable Gaussian of sigma (N,) px, `radius` taps each side
    (`support` (N,): fewer for some images, as OpenCV's 3-tap kernel beside a 5-tap one)."""
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


def elastic_field(n: int, height: int, width: int, alpha: float, sigma: float,
                  generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n, 2, H, W) displacements (dx, dy) in pixels: albumentations' elastic field, built on the device.

    Full-resolution N(0, 1) noise per image, divided by its max |value| (albumentations' scaling),
    smoothed by a Gaussian of `sigma` px and times `alpha`. The smoothing runs on a grid coarser by
    s = sigma // 3 (average-pooled noise keeps the field's variance, a Gaussian of sigma / s px
    there, bilinear back): the field is smooth over sigma px anyway, and it costs 1/s^2 as much.
    """
    noise = torch.randn(n, 2, height, width, generator=generator, device=device)
    noise = noise / noise.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    step = max(1, int(sigma // 3))
    if step > 1:
        noise = F.avg_pool2d(noise, step, ceil_mode=True)
    coarse = sigma / step
    field = gaussian_blur(noise, torch.full((n,), coarse, device=device), max(1, math.ceil(4 * coarse)), "replicate")
    if step > 1:
        rows, cols = field.shape[-2:]
        field = F.interpolate(field, size=(rows * step, cols * step), mode="bilinear",
                              align_corners=False)[..., :height, :width]
    return field * alpha


def source_pixels(draws: Draws, chosen: torch.Tensor, height: int, width: int, config: AugmentConfig,
                  device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """(n, H, W, 2) input pixel (x, y) each output pixel of the `chosen` images (n,) samples.

    Output pixel p reads the input at S^-1 R^-1 (p + d(p) - c - t) + c: the elastic displacement
    d of the affine output, undone through the affine map (zoom S, rotation R about the centre c,
    shift t); images without the affine step have S = R = 1, t = 0, without elastic d = 0.
    """
    n = len(chosen)
    affine = draws.on_affine[chosen]
    scale = torch.where(affine, draws.scale[chosen], 1.0)
    angle = torch.where(affine, draws.angle[chosen], 0.0)
    shift = torch.where(affine[:, None], draws.shift[chosen], 0.0)
    centre = torch.tensor([(width - 1) / 2, (height - 1) / 2])
    # S^-1 R(-angle) = [[a, b], [-b, a]]; elementwise on broadcast rows and columns, not a (n, HW, 2) bmm
    coefficients = torch.stack([torch.cos(angle) / scale, torch.sin(angle) / scale, *(centre + shift).unbind(1)], 1)
    a, b, ox, oy = on_device(coefficients.float(), device).view(n, 4, 1, 1).unbind(1)
    qx = torch.arange(width, device=device, dtype=torch.float32).view(1, 1, width) - ox  # (n, 1, W)
    qy = torch.arange(height, device=device, dtype=torch.float32).view(1, height, 1) - oy  # (n, H, 1)
    elastic = draws.on_elastic[chosen]
    if generator is not None and bool(elastic.any()):
        index = on_device(elastic.nonzero().flatten(), device)
        field = elastic_field(len(index), height, width, config.elastic_alpha, config.elastic_sigma, generator,
                              device)
        qx = qx.expand(n, height, width).index_add(0, index, field[:, 0])
        qy = qy.expand(n, height, width).index_add(0, index, field[:, 1])
    cx, cy = centre.tolist()
    return torch.stack([a * qx + b * qy + cx, a * qy - b * qx + cy], dim=-1)


def _turn(x: torch.Tensor, draws: Draws, flags: list[torch.Tensor]) -> torch.Tensor:
    """x (B, C, H, W) with each image flipped / turned as drawn; exact, no resampling."""
    on_h, on_v, turns = flags
    if bool(draws.on_hflip.any()):
        x = torch.where(on_h.view(-1, 1, 1, 1), x.flip(-1), x)
    if bool(draws.on_vflip.any()):
        x = torch.where(on_v.view(-1, 1, 1, 1), x.flip(-2), x)
    for k in range(1, 4):
        if bool((draws.turns == k).any()):
            x = torch.where((turns == k).view(-1, 1, 1, 1), torch.rot90(x, k, dims=(-2, -1)), x)
    return x


def on_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor on `device`, copied without blocking (from page-locked memory on CUDA)."""
    if device.type == "cuda":
        x = x.pin_memory()
    return x.to(device, non_blocking=True)


def _subset(x: torch.Tensor, on: torch.Tensor, step, *args: torch.Tensor) -> torch.Tensor:
    """x with step(x[i], args[i]) in place of the images i where `on` (a CPU (B,) bool) holds."""
    if not bool(on.any()):
        return x
    index = on_device(on.nonzero().flatten(), x.device)
    picked = [a.index_select(0, index) for a in args]
    return x.index_copy(0, index, step(x.index_select(0, index), *picked))


def augment_batch(config: AugmentConfig, images: torch.Tensor, masks: torch.Tensor, weights: torch.Tensor | None,
                  seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One random draw per image, the same for its image, mask and weight map.

    images (B, C, H, W) float32 in [0, 1]; masks (B, H, W) or (B, K, H, W) integer labels;
    weights (B, H, W) float32 or None; all on one device, returned on it, in their dtypes.
    `seed`: `batch_seed(seed, epoch, batch, rank)`. Steps with no image drawn are skipped, so
    with every p = 0 the tensors come back unchanged.
    """
    batch, _, height, width = images.shape
    device = images.device
    draws = draw(config, batch, height, width, torch.Generator().manual_seed(seed))
    labels = masks if masks.dim() == 4 else masks.unsqueeze(1)
    labels = [labels] + ([weights.unsqueeze(1)] if weights is not None else [])
    flags = [on_device(t, device) for t in (draws.on_hflip, draws.on_vflip, draws.turns)]
    images, labels = _turn(images, draws, flags), [_turn(t, draws, flags) for t in labels]

    warped = draws.on_affine | draws.on_elastic
    if bool(warped.any()):
        chosen = warped.nonzero().flatten()
        generator = field_generator(device, draws.field_seed) if bool(draws.on_elastic.any()) else None
        src = source_pixels(draws, chosen, height, width, config, device, generator)
        grid = src  # pixels -> grid_sample's [-1, 1] (align_corners: -1 and 1 are the edge pixels' centres)
        grid[..., 0].mul_(2 / max(width - 1, 1))
        grid[..., 1].mul_(2 / max(height - 1, 1))
        grid.sub_(1)
        index = on_device(chosen, device)
        sample = lambda x, mode: F.grid_sample(x, grid, mode=mode, padding_mode="reflection",  # noqa: E731
                                               align_corners=True)
        images = images.index_copy(0, index, sample(images.index_select(0, index), "bilinear"))
        labels = [t.index_copy(0, index, sample(t.index_select(0, index).float(), "nearest").to(t.dtype))
                  for t in labels]

    params = on_device(torch.stack([draws.contrast, draws.brightness, draws.gamma, draws.noise_std,
                                     draws.blur_sigma, draws.blur_radius], dim=1), device)
    contrast, brightness, gamma, noise_std, blur_sigma, blur_radius = params.unbind(1)
    images = _subset(images, draws.on_bc, lambda x, a, b: (x * a.view(-1, 1, 1, 1) + b.view(-1, 1, 1, 1)).clamp(0, 1),
                     contrast, brightness)
    images = _subset(images, draws.on_gamma, lambda x, g: x.pow(g.view(-1, 1, 1, 1)), gamma)
    if bool(draws.on_noise.any()):
        noise_generator = field_generator(device, draws.field_seed + 1)
        images = _subset(images, draws.on_noise, lambda x, s: (x + s.view(-1, 1, 1, 1) * torch.randn(
            x.shape, generator=noise_generator, device=device)).clamp(0, 1), noise_std)
    images = _subset(images, draws.on_blur, lambda x, s, r: gaussian_blur(x, s, 2, "reflect", r),
                     blur_sigma, blur_radius)

    masks = labels[0] if masks.dim() == 4 else labels[0].squeeze(1)
    return images, masks, (labels[1].squeeze(1) if weights is not None else None)
