"""The device executor (data/device_augment.py), on CPU tensors, beside the CPU executor (albumentations)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
import torch

from unetkit.data.augment import AugmentConfig, Augmenter, albumentations_step, augment_config, batch_seed, describe
from unetkit.data.device_augment import augment_batch, draw, elastic_field, pad_crop_batch, pixel_noise

EVERYTHING = AugmentConfig(p_hflip=0.5, p_vflip=0.5, p_rotate90=0.5, p_affine=1.0, p_elastic=1.0,
                           p_brightness_contrast=1.0, p_gamma=1.0, p_noise=1.0, p_blur=1.0)
OFF = AugmentConfig(p_hflip=0.0)
STEPS = {"hflip": "p_hflip", "vflip": "p_vflip", "rotate90": "p_rotate90", "affine": "p_affine", "elastic": "p_elastic",
         "brightness_contrast": "p_brightness_contrast", "gamma": "p_gamma", "noise": "p_noise", "blur": "p_blur"}
ONE_AT_A_TIME = {name: dataclasses.replace(OFF, **{field: 1.0}) for name, field in STEPS.items()}
# every step on part of the time, each with its own probability; the strong preset's ranges
MIXED = dataclasses.replace(augment_config("strong"), **{field: round(0.2 + 0.07 * i, 2)
                                                         for i, field in enumerate(STEPS.values())})


def example(b: int = 8, size: int = 32, labels: tuple[int, ...] = (0, 3, 7),
            channels: int = 2) -> tuple[torch.Tensor, ...]:
    """images (b, channels, size, size) in [0, 1], masks (b, size, size) uint8 from `labels`, weights (b, size, size)."""
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(b, channels, size, size, generator=gen)
    masks = torch.tensor(labels, dtype=torch.uint8)[torch.randint(0, len(labels), (b, size, size), generator=gen)]
    return images, masks, masks.float() * 5 + 1


def albumentations_draws(config: AugmentConfig, n: int, size: int) -> tuple[dict[str, int], dict[str, dict[str, list]]]:
    """How often each step of the CPU executor runs over n images of size x size, and its values, named as
    in `describe`: each albumentations transform draws as it does in a call, without applying itself."""
    transforms = Augmenter(config).pipeline.transforms
    for i, transform in enumerate(transforms):
        transform.set_random_seed(i)
    data = {"image": np.random.default_rng(0).random((size, size, 1)).astype(np.float32)}
    names = [op.name for op in describe(config)]
    centre = np.array([(size - 1) / 2, (size - 1) / 2])
    counts = dict.fromkeys(names, 0)
    values: dict[str, dict[str, list]] = {name: {} for name in names}

    def keep(name: str, **drawn: float) -> None:
        for key, value in drawn.items():
            values[name].setdefault(key, []).append(value)

    for _ in range(n):
        for name, transform in zip(names, transforms):
            if not transform.should_apply():
                continue
            p = transform.update_transform_params(transform.get_params(), data)
            p.update(transform.get_params_dependent_on_data(p, data))
            counts[name] += 1
            if name == "rotate90":
                keep(name, turns=p["factor"])
            elif name == "affine":  # the matrix is c + t + RS (x - c): t = its last column - c + RS c
                shift = p["matrix"][:2, 2] - centre + p["matrix"][:2, :2] @ centre
                keep(name, shift_x=round(shift[0]), shift_y=round(shift[1]), scale_x=p["scale"]["x"],
                     scale_y=p["scale"]["y"], rotate=p["rotate"])
            elif name == "brightness_contrast":
                keep(name, contrast=p["alpha"] - 1, brightness=p["beta"])
            elif name == "gamma":
                keep(name, gamma=p["gamma"])
            elif name == "noise":  # not kept by albumentations: estimated from the noise drawn (1024 px)
                keep(name, std=float(p["noise_map"].std()))
            elif name == "blur":  # kernel[c + 1] / kernel[c] = exp(-1 / (2 sigma^2))
                kernel = p["kernel"]
                middle = len(kernel) // 2
                keep(name, ksize=len(kernel), sigma=math.sqrt(-0.5 / math.log(kernel[middle + 1] / kernel[middle])))
    return counts, values


def test_the_two_executors_draw_each_step_as_often_and_from_the_same_ranges() -> None:
    """2000 images of 32 x 32: each step's frequency within 3 sigma of its p in both executors; each value's
    mean within 3 sigma of the other executor's; whole-number values take the same set of values, the others
    reach the ends of their range (to 2% of it) and never leave it."""
    n, size = 2000, 32
    ops = describe(MIXED)
    ours, _ = draw(ops, n, size, size, torch.Generator().manual_seed(1))
    counts, theirs = albumentations_draws(MIXED, n, size)
    assert len(ops) == 9
    for op in ops:
        sigma = math.sqrt(op.p * (1 - op.p) / n)
        assert abs(counts[op.name] / n - op.p) <= 3 * sigma, op.name
        on = ours[op.name]["on"]
        assert abs(float(on.double().mean()) - op.p) <= 3 * sigma, op.name
        for key, (low, high) in op.ranges.items():
            a, b = ours[op.name][key][on].numpy(), np.array(theirs[op.name][key], dtype=np.float64)
            spread = math.sqrt(a.var() / len(a) + b.var() / len(b))
            assert abs(a.mean() - b.mean()) <= 3 * spread, (op.name, key)
            if key in ("turns", "ksize", "shift_x", "shift_y"):
                assert set(a.tolist()) == set(b.tolist()), (op.name, key)
                continue
            slack = 0.1 * high if key == "std" else 1e-9  # albumentations' std: estimated to a few %
            for values in (a, b):
                assert low - slack <= values.min() <= low + 0.02 * (high - low) + slack, (op.name, key)
                assert high - 0.02 * (high - low) - slack <= values.max() <= high + slack, (op.name, key)
    assert set(ours["blur"]["ksize"].tolist()) == {3.0, 5.0} and set(ours["rotate90"]["turns"].tolist()) == {0, 1, 2, 3}
    assert float((ours["blur"]["ksize"] == 3).double().mean()) == pytest.approx(1 / 3, abs=0.04)  # sizes 3, 4 -> 5, 5


def albumentations_image(name: str, config: AugmentConfig, image: np.ndarray, mask: np.ndarray, values: dict[str, float],
                         field: np.ndarray | None, noise: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """image (H, W, C) and mask (H, W) through the albumentations transform of step `name` with the device
    executor's values (the mask as it is for intensity steps)."""
    import albumentations.augmentations.blur.functional as fblur
    import albumentations.augmentations.geometric.functional as fgeometric

    transform = albumentations_step(next(op for op in describe(config) if op.name == name))
    params: dict[str, Any] = {}
    if name == "rotate90":
        params = {"factor": int(values["turns"])}
    elif name == "affine":
        params = {"output_shape": image.shape[:2], "matrix": fgeometric.create_affine_transformation_matrix(
            {"x": values["shift_x"], "y": values["shift_y"]}, {"x": 0.0, "y": 0.0},
            {"x": values["scale_x"], "y": values["scale_y"]}, values["rotate"], fgeometric.center(image.shape))}
    elif name == "elastic":
        ys, xs = np.mgrid[: image.shape[0], : image.shape[1]].astype(np.float32)
        params = {"map_x": xs + field[0], "map_y": ys + field[1]}
    elif name == "brightness_contrast":
        params = {"alpha": 1 + values["contrast"], "beta": values["brightness"]}
    elif name == "gamma":
        params = {"gamma": values["gamma"]}
    elif name == "noise":
        params = {"noise_map": values["std"] * noise}
    elif name == "blur":
        params = {"kernel": fblur.create_gaussian_kernel_1d(values["sigma"], int(values["ksize"]))}
    out = transform.apply(image, **params)
    geometric = name in ("hflip", "vflip", "rotate90", "affine", "elastic")
    return out if out.ndim == 3 else out[..., None], transform.apply_to_mask(mask, **params) if geometric else mask


@pytest.mark.parametrize("name", list(STEPS))
def test_the_same_drawn_values_give_the_same_image_in_both_executors(name: str) -> None:
    """Each step alone on 8 32 x 32 images of 1 and 3 channels: the device executor's output equals
    albumentations' transform given the same values to 1e-5 (affine, elastic, flips, turns, intensity),
    and its masks equal albumentations' on at least 99.9% of the pixels. The elastic step is given the
    same displacement field: the executors cannot draw the same noise (numpy's generator against
    torch's), and the device smooths it on a coarser grid
    (test_elastic_displacements_have_albumentations_spread). Not 2 channels: OpenCV resamples those
    at 1/32 px (its fixed-point path), up to 0.02 from exact bilinear on noise images."""
    config = ONE_AT_A_TIME[name]
    for channels in (1, 3):
        _assert_same_image(name, config, *example(channels=channels)[:2])


def _assert_same_image(name: str, config: AugmentConfig, images: torch.Tensor, masks: torch.Tensor) -> None:
    seed = 21
    draws, field_seed = draw(describe(config), 8, 32, 32, torch.Generator().manual_seed(seed))
    out, out_masks, _ = augment_batch(config, images, masks, None, seed)
    field = noise = None
    if name == "elastic":
        field = elastic_field(8, 32, 32, config.elastic_alpha, config.elastic_sigma,
                              field_seed, torch.device("cpu")).numpy()
        assert float(np.abs(field).max()) > 0.5  # a field that moves pixels
    if name == "noise":
        noise = pixel_noise(images.shape, torch.device("cpu"), field_seed).permute(0, 2, 3, 1).numpy()
    worst, mask_pixels_equal = 0.0, 0
    for i in range(8):
        values = {key: float(v[i]) for key, v in draws[name].items()}
        theirs, their_mask = albumentations_image(name, config, images[i].permute(1, 2, 0).numpy(), masks[i].numpy(),
                                                  values, field[i] if field is not None else None,
                                                  noise[i] if noise is not None else None)
        worst = max(worst, float(np.abs(out[i].permute(1, 2, 0).numpy() - theirs).max()))
        mask_pixels_equal += int((out_masks[i].numpy() == their_mask).sum())
    assert worst <= 1e-5
    assert mask_pixels_equal >= 0.999 * masks.numel()  # nearest neighbour: the same labels, ties aside
    assert not torch.equal(out, images)


def test_the_same_seed_gives_bit_identical_batches_and_another_batch_other_draws() -> None:
    images, masks, weights = example()
    first = augment_batch(EVERYTHING, images, masks, weights, batch_seed(3, 1, 4, 0))
    again = augment_batch(EVERYTHING, images, masks, weights, batch_seed(3, 1, 4, 0))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert batch_seed(3, 1, 4, 0) == int(np.random.SeedSequence((3, 1, 4, 0)).generate_state(1)[0])  # loader.py's
    for other in (batch_seed(3, 1, 5, 0), batch_seed(3, 1, 4, 1), batch_seed(3, 2, 4, 0)):  # batch, rank, epoch
        assert not torch.equal(augment_batch(EVERYTHING, images, masks, weights, other)[0], first[0])
        a, b = (draw(describe(EVERYTHING), 8, 32, 32, torch.Generator().manual_seed(s))[0]
                for s in (batch_seed(3, 1, 4, 0), other))
        assert not torch.equal(a["affine"]["rotate"], b["affine"]["rotate"])


@pytest.mark.parametrize("name", [*ONE_AT_A_TIME, "everything", "strong"])
def test_masks_hold_only_their_own_labels_after_every_transform(name: str) -> None:
    config = {"everything": EVERYTHING, "strong": augment_config("strong")}.get(name) or ONE_AT_A_TIME[name]
    images, masks, weights = example()
    out_images, out_masks, out_weights = augment_batch(config, images, masks, weights, 11)
    assert out_masks.dtype == torch.uint8 and out_masks.shape == masks.shape
    assert set(out_masks.unique().tolist()) <= {0, 3, 7}
    assert out_images.shape == images.shape and out_images.dtype == torch.float32
    assert 0.0 <= float(out_images.min()) and float(out_images.max()) <= 1.0
    assert torch.equal(out_weights, out_masks.float() * 5 + 1)  # weight maps move with their masks, pixel for pixel
    multilabel = torch.stack([masks == 3, masks == 7], dim=1).to(torch.uint8)  # (B, K, H, W)
    _, out_multi, _ = augment_batch(config, images, multilabel, None, 11)
    assert out_multi.shape == multilabel.shape and set(out_multi.unique().tolist()) <= {0, 1}
    assert torch.equal(out_multi[:, 0] == 1, out_masks == 3)  # the same draw for the same seed


def test_masks_turn_with_their_images_and_non_square_batches_keep_their_shape() -> None:
    images, masks, _ = example()
    out_images, out_masks, _ = augment_batch(ONE_AT_A_TIME["rotate90"], images, masks, None, 1)
    turns = []
    for i in range(len(images)):
        k = next(k for k in range(4) if torch.equal(out_images[i], torch.rot90(images[i], k, dims=(-2, -1))))
        assert torch.equal(out_masks[i], torch.rot90(masks[i], k, dims=(-2, -1)))
        turns.append(k)
    assert len(set(turns)) > 1  # 8 images, each its own draw
    _, wide_out, _ = augment_batch(ONE_AT_A_TIME["rotate90"], images[..., :20], masks[..., :20], None, 1)
    assert wide_out.shape == (8, 32, 20)  # non-square: 0 or 180 degrees, the batch keeps its shape


def test_every_probability_zero_returns_the_batch_bit_for_bit() -> None:
    images, masks, weights = example()
    out = augment_batch(OFF, images, masks, weights, 5)
    assert torch.equal(out[0], images) and torch.equal(out[1], masks) and torch.equal(out[2], weights)


def test_elastic_displacements_have_albumentations_spread() -> None:
    import albumentations.augmentations.geometric.functional as fgeometric

    rng = np.random.default_rng(0)
    theirs = np.stack([np.stack(fgeometric.generate_displacement_fields((256, 256), 30.0, 6.0, False, (0, 0), rng,
                                                                        "gaussian")) for _ in range(8)])
    ours = elastic_field(8, 256, 256, 30.0, 6.0, 0, torch.device("cpu")).numpy()
    inner = slice(64, 192)  # away from the borders, where the two smoothings pad differently
    # alpha 30, sigma 6: about 0.31 px (alpha / E max|z| / (2 sqrt(pi) sigma)); within 10% of albumentations'
    assert ours[..., inner, inner].std() == pytest.approx(theirs[..., inner, inner].std(), rel=0.10)
    assert 0.25 < ours[..., inner, inner].std() < 0.37
    assert abs(ours.mean()) < 0.05  # no drift


def test_an_object_touching_the_border_survives_shifts_and_elastic_warps() -> None:
    config = dataclasses.replace(OFF, p_affine=1.0, p_elastic=1.0, shift=0.1, rotate_deg=0.0, scale=0.0)
    masks = torch.zeros(32, 64, 64, dtype=torch.uint8)
    masks[:, :16, :16] = 1  # a 16 x 16 object in the corner, touching two borders
    _, out, _ = augment_batch(config, masks.float().unsqueeze(1), masks, None, 7)
    # Shifts up to 6 px and elastic displacements of a few px: where the grid leaves the image it
    # reads the reflected object, never a fill value, so the corner stays the object's in all 32 images.
    assert bool((out[:, 0, 0] == 1).all())
    assert float(out.flatten(1).sum(1).min()) >= 0.25 * 256  # at least (16 - 6 - elastic)^2 of its 256 px


@pytest.mark.parametrize(("pad_to", "crop"), [(40, 24), (80, 70)])
def test_the_same_drawn_windows_give_the_same_pad_crop_in_both_executors(pad_to: int, crop: int) -> None:
    """crop_op on 8 images of 32 x 20 (3 channels), their class masks, multi-label masks and weights, padded to 40
    (crops of 24) or 80 (crops of 70: the padding wider than the image, reflected twice): for the same drawn
    windows the device executor's tensors equal the CPU executor's arrays to 1e-5, masks exactly."""
    from unetkit.data.augment import crop_windows, pad_crop

    images, masks, weights = (x[..., :20] for x in example(channels=3))
    multilabel = torch.stack([masks == 3, masks == 7], dim=1).to(torch.uint8)  # (B, K, H, W)
    windows = crop_windows(8, pad_to, crop, np.random.default_rng(3))
    assert len(set(windows[0].tolist())) > 1  # each image its own window
    theirs = pad_crop(images.permute(0, 2, 3, 1).numpy(), masks.numpy(), weights.numpy(), pad_to, crop, *windows)
    their_multi = pad_crop(images.permute(0, 2, 3, 1).numpy(), multilabel.permute(0, 2, 3, 1).numpy(), None, pad_to,
                           crop, *windows)[1]
    ours = [pad_crop_batch(x, pad_to, crop, *windows) for x in (images, masks, weights, multilabel)]
    assert ours[0].shape == (8, 3, crop, crop) and ours[3].shape == (8, 2, crop, crop)
    assert float(np.abs(ours[0].permute(0, 2, 3, 1).numpy() - theirs[0]).max()) <= 1e-5
    assert np.array_equal(ours[1].numpy(), theirs[1]) and ours[1].dtype == torch.uint8
    assert float(np.abs(ours[2].numpy() - theirs[2]).max()) <= 1e-5
    assert np.array_equal(ours[3].permute(0, 2, 3, 1).numpy(), their_multi)
