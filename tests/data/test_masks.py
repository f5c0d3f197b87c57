from __future__ import annotations

import numpy as np
import pytest

from unetkit.data.masks import decode_mask
from unetkit.errors import UserError


@pytest.mark.parametrize("foreground,dtype", [(1, np.uint8), (255, np.uint8), (65535, np.uint16), (1.0, np.float32)])
def test_binary_encodings_map_to_zero_one(foreground: float, dtype: type) -> None:
    raw = np.array([[0, foreground], [foreground, 0]], dtype=dtype)
    decoded = decode_mask(raw, 1, "m.png")
    assert decoded.dtype == np.uint8 and decoded.tolist() == [[0, 1], [1, 0]]


def test_all_zero_mask_is_empty() -> None:
    assert decode_mask(np.zeros((3, 3), np.uint16), 1, "m.png").sum() == 0


def test_gray_stored_as_rgb_is_accepted() -> None:
    raw = np.zeros((2, 2, 3), np.uint8)
    raw[0, 0] = 255
    assert decode_mask(raw, 1, "m.png").sum() == 1


def test_uninterpretable_binary_values_name_file_and_values() -> None:
    with pytest.raises(UserError, match=r"m\.png: mask values \[0, 128, 255\]"):
        decode_mask(np.array([[0, 128, 255]], np.uint8), 1, "m.png")


def test_class_indices_beyond_num_classes_are_refused() -> None:
    # The classic silent failure: 0/255 masks with num_classes=3.
    with pytest.raises(UserError, match="do not fit num_classes=3"):
        decode_mask(np.array([[0, 255]], np.uint8), 3, "m.png")


def test_class_indices_pass_through() -> None:
    assert decode_mask(np.array([[0, 1, 2]], np.uint8), 3, "m.png").tolist() == [[0, 1, 2]]


def test_two_class_model_reads_0_255_as_binary() -> None:
    assert decode_mask(np.array([[0, 255]], np.uint8), 2, "m.png").tolist() == [[0, 1]]


def test_colour_mask_is_refused() -> None:
    raw = np.zeros((2, 2, 3), np.uint8)
    raw[0, 0] = (255, 0, 0)
    with pytest.raises(UserError, match="different channels"):
        decode_mask(raw, 1, "m.png")


def test_gray_alpha_mask_with_uniform_alpha_is_read() -> None:
    raw = np.zeros((2, 2, 2), np.uint8)
    raw[..., 1] = 255
    raw[1, 1, 0] = 255
    assert decode_mask(raw, 1, "la.png").tolist() == [[0, 0], [0, 1]]
