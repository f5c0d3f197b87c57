from __future__ import annotations

import numpy as np
import pytest

from unetkit.data.augment import AugmentConfig, Augmenter, augment_config
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
    augmenter.reseed(3)
    out_images, out_masks, _ = augmenter(images, masks, None)
    assert out_images.shape == images.shape and out_masks.shape == masks.shape
    assert not np.array_equal(out_masks, masks)  # something moved
    disagreement = ((out_images[..., 0] > 0.5) != (out_masks > 0)).mean()
    assert disagreement < 0.01  # only interpolated edge pixels may differ


def test_weight_maps_move_with_the_mask() -> None:
    images, masks = mask_drawn_in_image(4)
    augmenter = Augmenter(GEOMETRIC)
    augmenter.reseed(5)
    _, out_masks, out_weights = augmenter(images, masks, masks.astype(np.float32) * 2.0)
    assert np.array_equal(out_weights, out_masks.astype(np.float32) * 2.0)


def test_strong_preset_changes_pixels_but_never_mask_values() -> None:
    images, masks = mask_drawn_in_image(8)
    augmenter = Augmenter(augment_config("strong"))
    augmenter.reseed(1)
    out_images, out_masks, _ = augmenter(images, masks, None)
    assert set(np.unique(out_masks)) <= {0, 1}
    assert not np.allclose(out_images, images)


def test_same_seed_same_draws() -> None:
    images, masks = mask_drawn_in_image(4)
    first, second = Augmenter(GEOMETRIC), Augmenter(GEOMETRIC)
    first.reseed(11)
    second.reseed(11)
    assert np.array_equal(first(images, masks, None)[1], second(images, masks, None)[1])


def test_params_override_the_preset_and_unknown_keys_are_named() -> None:
    assert augment_config("seed", {"p_elastic": 0.5}).p_elastic == 0.5
    assert augment_config("none") is None
    with pytest.raises(UserError, match="data.augment_params.elastc"):
        augment_config("strong", {"elastc": 1})
