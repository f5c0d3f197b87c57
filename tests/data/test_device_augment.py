"""Batch augmentation with torch ops (data/device_augment.py), on CPU tensors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from unetkit.data.augment import AugmentConfig, augment_config, batch_seed
from unetkit.data.device_augment import augment_batch, draw, elastic_field, source_pixels

EVERYTHING = AugmentConfig(p_hflip=0.5, p_vflip=0.5, p_rotate90=0.5, p_affine=1.0, p_elastic=1.0,
                           p_brightness_contrast=1.0, p_gamma=1.0, p_noise=1.0, p_blur=1.0)
OFF = AugmentConfig(p_hflip=0.0)
ONE_AT_A_TIME = {name: dataclasses.replace(OFF, **{name: 1.0}) for name in
                 ("p_hflip", "p_vflip", "p_rotate90", "p_affine", "p_elastic", "p_brightness_contrast", "p_gamma",
                  "p_noise", "p_blur")}


def example(b: int = 8, size: int = 32, labels: tuple[int, ...] = (0, 3, 7)) -> tuple[torch.Tensor, ...]:
    """images (b, 2, size, size) in [0, 1], masks (b, size, size) uint8 from `labels`, weights (b, size, size)."""
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(b, 2, size, size, generator=gen)
    masks = torch.tensor(labels, dtype=torch.uint8)[torch.randint(0, len(labels), (b, size, size), generator=gen)]
    return images, masks, masks.float() * 5 + 1


def test_the_same_seed_gives_bit_identical_batches_and_another_batch_other_draws() -> None:
    images, masks, weights = example()
    first = augment_batch(EVERYTHING, images, masks, weights, batch_seed(3, 1, 4, 0))
    again = augment_batch(EVERYTHING, images, masks, weights, batch_seed(3, 1, 4, 0))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert batch_seed(3, 1, 4, 0) == int(np.random.SeedSequence((3, 1, 4, 0)).generate_state(1)[0])  # loader.py's
    for other in (batch_seed(3, 1, 5, 0), batch_seed(3, 1, 4, 1), batch_seed(3, 2, 4, 0)):  # batch, rank, epoch
        assert not torch.equal(augment_batch(EVERYTHING, images, masks, weights, other)[0], first[0])
        a, b = (draw(EVERYTHING, 8, 32, 32, torch.Generator().manual_seed(s)) for s in (batch_seed(3, 1, 4, 0), other))
        assert not torch.equal(a.angle, b.angle)


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


def test_flips_and_quarter_turns_are_exact() -> None:
    images, masks, weights = example()
    out = augment_batch(ONE_AT_A_TIME["p_hflip"], images, masks, weights, 1)
    assert torch.equal(out[0], images.flip(-1)) and torch.equal(out[1], masks.flip(-1))
    out = augment_batch(ONE_AT_A_TIME["p_vflip"], images, masks, weights, 1)
    assert torch.equal(out[0], images.flip(-2)) and torch.equal(out[2], weights.flip(-2))
    out_images, out_masks, _ = augment_batch(ONE_AT_A_TIME["p_rotate90"], images, masks, None, 1)
    turns = []
    for i in range(len(images)):
        k = next(k for k in range(4) if torch.equal(out_images[i], torch.rot90(images[i], k, dims=(-2, -1))))
        assert torch.equal(out_masks[i], torch.rot90(masks[i], k, dims=(-2, -1)))
        turns.append(k)
    assert len(set(turns)) > 1  # 8 images, each its own draw
    wide_images, wide_masks, _ = example(size=32)
    _, wide_out, _ = augment_batch(ONE_AT_A_TIME["p_rotate90"], wide_images[..., :20], wide_masks[..., :20], None, 1)
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
    ours = elastic_field(8, 256, 256, 30.0, 6.0, torch.Generator().manual_seed(0), torch.device("cpu")).numpy()
    inner = slice(64, 192)  # away from the borders, where the two smoothings pad differently
    # alpha 30, sigma 6: about 0.31 px (alpha / E max|z| / (2 sqrt(pi) sigma)); within 10% of albumentations'
    assert ours[..., inner, inner].std() == pytest.approx(theirs[..., inner, inner].std(), rel=0.10)
    assert 0.25 < ours[..., inner, inner].std() < 0.37
    assert abs(ours.mean()) < 0.05  # no drift


def test_affine_shifts_are_uniform_within_the_configured_fraction() -> None:
    config = dataclasses.replace(OFF, p_affine=1.0, scale=0.0, rotate_deg=0.0, shift=0.1)
    draws = draw(config, 512, 64, 64, torch.Generator().manual_seed(0))
    src = source_pixels(draws, torch.arange(512), 64, 64, config, torch.device("cpu"), None)
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    moved = src - torch.stack([xs, ys], dim=-1)  # (512, 64, 64, 2): one constant shift per image
    per_image = moved[:, 0, 0]
    assert torch.allclose(moved, per_image.view(512, 1, 1, 2).expand_as(moved), atol=1e-4)
    assert float(per_image.abs().max()) <= 6.4  # 0.1 of 64 px
    assert float(per_image.abs().mean()) == pytest.approx(3.2, rel=0.1)  # |U(-6.4, 6.4)| averages 3.2 px


def test_rotation_turns_the_sampling_grid_about_the_centre() -> None:
    config = dataclasses.replace(OFF, p_affine=1.0, scale=0.0, shift=0.0, rotate_deg=30.0)
    draws = draw(config, 16, 33, 33, torch.Generator().manual_seed(2))
    src = source_pixels(draws, torch.arange(16), 33, 33, config, torch.device("cpu"), None)
    assert torch.allclose(src[:, 16, 16], torch.tensor([16.0, 16.0]), atol=1e-4)  # the centre stays
    corner = src[:, 0, 0] - 16  # (-16, -16) turned by the drawn angle
    turned = torch.atan2(corner[:, 1], corner[:, 0]) - torch.atan2(torch.tensor(-16.0), torch.tensor(-16.0))
    assert torch.allclose(torch.remainder(turned - (-draws.angle) + torch.pi, 2 * torch.pi) - torch.pi,
                          torch.zeros(16), atol=1e-4)
    assert float(draws.angle.abs().max()) <= torch.pi / 6


def test_an_object_touching_the_border_survives_shifts_and_elastic_warps() -> None:
    config = dataclasses.replace(OFF, p_affine=1.0, p_elastic=1.0, shift=0.1, rotate_deg=0.0, scale=0.0)
    masks = torch.zeros(32, 64, 64, dtype=torch.uint8)
    masks[:, :16, :16] = 1  # a 16 x 16 object in the corner, touching two borders
    _, out, _ = augment_batch(config, masks.float().unsqueeze(1), masks, None, 7)
    # Shifts up to 6.4 px and elastic displacements of a few px: where the grid leaves the image it
    # reads the reflected object, never a fill value, so the corner stays the object's in all 32 images.
    assert bool((out[:, 0, 0] == 1).all())
    assert float(out.flatten(1).sum(1).min()) >= 0.25 * 256  # at least (16 - 6.4 - elastic)^2 of its 256 px
