from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from unetkit.data.augment import PRESETS, AugmentConfig, Augmenter, augment_config, crop_op, describe, pad_crop, warp_margin
from unetkit.data.synthetic import synthetic_example
from unetkit.errors import UserError

GEOMETRIC = AugmentConfig(p_hflip=0.5, p_vflip=0.5, p_rotate90=1.0, p_affine=1.0, p_elastic=1.0)


def mask_drawn_in_image(count: int = 16) -> tuple[np.ndarray, np.ndarray]:
    masks = np.stack([synthetic_example(i, size=64, seed=9, empty_fraction=0.0)[1] > 0 for i in range(count)])
    images = (0.15 + 0.7 * masks.astype(np.float32))[..., None]
    return images.astype(np.float32), masks.astype(np.uint8)


def test_geometric_augmentation_keeps_image_and_mask_aligned() -> None:
    images, masks = mask_drawn_in_image()
    augmenter = Augmenter(GEOMETRIC)
    out_images, out_masks, _ = augmenter(images, masks, None, 3)
    assert out_images.shape == images.shape and out_masks.shape == masks.shape
    assert not np.array_equal(out_masks, masks)  # something moved
    disagreement = ((out_images[..., 0] > 0.5) != (out_masks > 0)).mean()
    assert disagreement < 0.01  # only interpolated edge pixels may differ


def test_weight_maps_move_with_the_mask() -> None:
    images, masks = mask_drawn_in_image(4)
    augmenter = Augmenter(GEOMETRIC)
    _, out_masks, out_weights = augmenter(images, masks, masks.astype(np.float32) * 2.0, 5)
    assert np.array_equal(out_weights, out_masks.astype(np.float32) * 2.0)


def test_strong_preset_changes_pixels_but_never_mask_values() -> None:
    images, masks = mask_drawn_in_image(8)
    augmenter = Augmenter(augment_config("strong"))
    out_images, out_masks, _ = augmenter(images, masks, None, 1)
    assert set(np.unique(out_masks)) <= {0, 1}
    assert not np.allclose(out_images, images)


def test_same_seed_same_draws() -> None:
    images, masks = mask_drawn_in_image(4)
    first, second = Augmenter(GEOMETRIC), Augmenter(GEOMETRIC)
    assert np.array_equal(first(images, masks, None, 11)[1], second(images, masks, None, 11)[1])


def test_params_override_the_preset_and_unknown_keys_are_named() -> None:
    assert augment_config("seed", {"p_elastic": 0.5}).p_elastic == 0.5
    assert augment_config("none") is None
    with pytest.raises(UserError, match="data.augment_params.elastc"):
        augment_config("strong", {"elastc": 1})


def test_the_description_lists_the_steps_that_are_on_in_order_with_their_ranges() -> None:
    steps = describe(augment_config("strong"))
    assert [(op.name, op.p) for op in steps] == [("hflip", 0.5), ("affine", 0.6), ("elastic", 0.3),
                                                 ("brightness_contrast", 0.5), ("gamma", 0.3), ("noise", 0.2),
                                                 ("blur", 0.1)]
    affine = steps[1]
    assert affine.ranges == {"shift_x": (-0.05, 0.05), "shift_y": (-0.05, 0.05), "scale_x": (0.9, 1.1),
                             "scale_y": (0.9, 1.1), "rotate": (-15.0, 15.0)}
    assert describe(AugmentConfig(p_hflip=0.0)) == ()
    assert len(Augmenter(augment_config("strong")).pipeline.transforms) == 7  # one transform per step


def test_warp_margin_is_read_from_the_warps_in_the_description() -> None:
    """15 deg, zoom out to 0.9, shift 0.05, elastic 30/6: 64 px around a 256 patch; 20 around 64; the affine
    step alone 59 (no elastic 30/6 = 5 px); none without warps."""
    strong = augment_config("strong")
    assert warp_margin(describe(strong), 256) == 64 and warp_margin(describe(strong), 64) == 20
    assert warp_margin(describe(dataclasses.replace(strong, p_elastic=0.0)), 256) == 59
    assert warp_margin(describe(PRESETS["d4"]), 256) == 0


def test_pad_crop_draws_its_windows_from_its_step_ranges() -> None:
    from unetkit.data.augment import crop_windows

    step = crop_op(40, 32)
    assert step.ranges == {"top": (0, 8), "left": (0, 8)} and step.settings == {"pad_to": 40, "crop": 32}
    images = np.arange(30 * 30, dtype=np.float32).reshape(1, 30, 30, 1).repeat(400, 0)
    windows = crop_windows(400, 40, 32, np.random.default_rng(0))
    out, _, _ = pad_crop(images, np.zeros((400, 30, 30), np.uint8), None, 40, 32, *windows)
    padded = np.pad(images[0, :, :, 0], 5, mode="reflect")  # centred: 5 px each side
    windows = {padded[y : y + 32, x : x + 32].tobytes(): (y, x) for y in range(9) for x in range(9)}
    drawn = {windows[window[:, :, 0].tobytes()] for window in out}  # every window one of the 81 of the range
    assert {y for y, _ in drawn} == set(range(9)) and {x for _, x in drawn} == set(range(9))
