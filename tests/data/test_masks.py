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


def test_binary_model_given_class_indices_gets_a_hint() -> None:
    with pytest.raises(UserError, match="set model.num_classes: 3"):
        decode_mask(np.array([[0, 1, 2]], np.uint8), 1, "m.png")


def test_ignore_index_is_kept_and_not_counted_as_a_class() -> None:
    decoded = decode_mask(np.array([[0, 2, 255]], np.uint8), 3, "m.png", ignore_index=255)
    assert decoded.tolist() == [[0, 2, 255]]


def test_classes_yaml_maps_colours_and_names_unknown_ones(tmp_path) -> None:
    from unetkit.data.masks import read_class_palette

    (tmp_path / "classes.yaml").write_text(
        "classes:\n  - {name: background, color: [0, 0, 0]}\n  - {name: road, color: [128, 64, 128]}\n"
        "  - {name: car, color: [0, 0, 142]}\n")
    palette = read_class_palette(tmp_path, 3)
    assert palette.names == ("background", "road", "car")
    raw = np.zeros((2, 2, 3), np.uint8)
    raw[0, 1] = (128, 64, 128)
    raw[1, 1] = (0, 0, 142)
    assert palette.indices(raw, "m.png").tolist() == [[0, 1], [0, 2]]
    raw[1, 0] = (1, 2, 3)
    with pytest.raises(UserError, match=r"m\.png: mask colours \(1, 2, 3\) are not named in classes.yaml"):
        palette.indices(raw, "m.png")
    with pytest.raises(UserError, match="names 3 classes but model.num_classes is 1"):
        read_class_palette(tmp_path, 1)


def test_class_never_present_is_refused_before_training() -> None:
    from unetkit.data.masks import check_class_coverage

    masks = np.zeros((2, 4, 4), np.uint8)
    masks[0, 0, 0] = 1
    with pytest.raises(UserError, match=r"classes \[2\] never occur"):
        check_class_coverage(masks, 3, None, "DIR")
    with pytest.raises(UserError, match="every mask is empty"):
        check_class_coverage(np.zeros((2, 4, 4), np.uint8), 1, None, "DIR")
