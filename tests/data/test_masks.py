"""Masks as stored, decoded to class indices; classes.yaml maps stored values as it maps colours, in a full and
a short form, with values to ignore."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_gray_png
from unetkit.data.dataset import load_labelled
from unetkit.data.masks import decode_mask, read_class_palette
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


@pytest.mark.parametrize("values,dtype,hint", [
    ([0, 128], np.uint8, "if 128 marks the foreground, save the masks with 255 (or 1) there"),
    ([0, 100], np.uint16, "if 100 marks the foreground"),
    ([0.0, 0.5], np.float32, "if 0.5 marks the foreground"),
    ([0.0, 0.5, 1.0], np.float32, "float masks must hold exactly 0 and 1"),
    ([0, 1, 2], np.uint8, "they look like class indices: train with --num-classes 3"),
    ([0, 1, 3], np.uint8, "they look like class indices: train with --num-classes 4"),
    ([0, 64, 128, 255], np.uint8, "train with --num-classes 4 and name the values in DIR/classes.yaml"),
    (list(range(0, 256, 5)), np.uint8, "antialiased or JPEG-compressed"),
])
def test_binary_model_given_other_values_gets_a_hint_naming_the_flag(values: list[float], dtype: type, hint: str) -> None:
    """0/128 used to suggest `num_classes: 129`: binary masks hold 0 and 1, 255 or 65535; indices get --num-classes K."""
    with pytest.raises(UserError) as caught:
        decode_mask(np.array([values], dtype), 1, "m.png")
    message = str(caught.value)
    assert message.startswith("m.png: mask values [") and "\n" not in message
    assert "binary masks hold 0 for background and one of 1, 255 or 65535 for foreground" in message
    assert hint in message
    assert "num_classes:" not in message and "129" not in message and "256" not in message


def test_multi_class_model_given_more_indices_gets_the_flag() -> None:
    with pytest.raises(UserError, match="do not fit num_classes=3 .*train with --num-classes 4$"):
        decode_mask(np.array([[0, 1, 2, 3]], np.uint8), 3, "m.png")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("channels", [0, 1, 3])
def test_non_finite_float_mask_is_named_not_called_a_channel_mismatch(bad: float, channels: int) -> None:
    raw = np.zeros((4, 5) + ((channels,) if channels else ()), np.float32)
    raw[1, 2] = bad
    raw[3, 0] = bad
    with pytest.raises(UserError, match=r"^m\.tif: 2 of 20 pixels are NaN or infinite; unetkit needs finite values"):
        decode_mask(raw, 1, "m.tif")


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


SIDE = 16
TRIMAP_YAML = "background: 2\npet: 1\nignore: 3\n"  # the Oxford pets' trimap: 1 = pet, 2 = background, 3 = border


def trimap_set(root: Path, n: int = 6) -> Path:
    """n gray images with a square pet (value 1) of side 4 + i inside a one-pixel border (3) on background (2)."""
    for i in range(n):
        mask = np.full((SIDE, SIDE), 2, np.uint8)
        mask[3:5 + i + 2, 3:5 + i + 2] = 3  # border ring around ...
        mask[4:4 + i + 2, 4:4 + i + 2] = 1  # ... the pet, (i + 2) x (i + 2)
        image = np.where(mask == 1, 200, 40).astype(np.uint8)
        write_gray_png(root / "images" / f"pet{i}.png", image)
        write_gray_png(root / "masks" / f"pet{i}.png", mask)
    (root / "classes.yaml").write_text(TRIMAP_YAML)
    return root


def test_three_line_trimap_yaml_maps_values_and_ignores_the_border(tmp_path: Path) -> None:
    root = trimap_set(tmp_path / "pets", n=2)
    palette = read_class_palette(root, 1)
    assert (palette.names, palette.values, palette.ignored, palette.ignore_to) == (("background", "pet"), (2, 1), (3,), 255)
    data = load_labelled(root, 1, 1, ignore_index=255, show_progress=False)
    # image 0: pet 2 x 2 = 4, border 4 x 4 - 4 = 12; image 1: pet 9, border 25 - 9 = 16
    assert [int((m == 1).sum()) for m in data.masks] == [4, 9]
    assert [int((m == 255).sum()) for m in data.masks] == [12, 16]
    assert [int((m == 0).sum()) for m in data.masks] == [SIDE * SIDE - 16, SIDE * SIDE - 25]


def test_full_form_with_ignore_entry(tmp_path: Path) -> None:
    root = trimap_set(tmp_path / "pets", n=1)
    (root / "classes.yaml").write_text("classes:\n  - {name: background, value: 2}\n  - {name: pet, value: 1}\n"
                                       "  - {name: border, value: 3, ignore: true}\n")
    data = load_labelled(root, 1, 2, ignore_index=7, show_progress=False)
    assert sorted(np.unique(data.masks).tolist()) == [0, 1, 7]


@pytest.mark.parametrize("text,expected", [
    ("background: 2\npet: 1\n", r"pet\d\.png: mask values 3 are not named in classes\.yaml"),
    ("classes:\n  - {name: border, ignore: true}\n", "an ignored entry needs the value or color it ignores"),
    ("background: [1, 2]\n", "every color must be"),
    ("- a\n", "expected 'classes:'"),
])
def test_bad_class_files_are_one_line(tmp_path: Path, text: str, expected: str) -> None:
    root = trimap_set(tmp_path / "pets", n=1)
    (root / "classes.yaml").write_text(text)
    with pytest.raises(UserError, match=expected):
        load_labelled(root, 1, 1, ignore_index=255, show_progress=False)


@pytest.mark.slow
def test_a_trimap_set_trains_with_the_border_ignored(tmp_path: Path) -> None:
    from unetkit.api import train
    from unetkit.training.recipes import resolve_train_config

    root = trimap_set(tmp_path / "pets")
    config = resolve_train_config({"out_dir": str(tmp_path / "run"), "data": {"data_dir": str(root), "patch_size": 0},
                                   "recipe": "seed", "preset": "small", "epochs": 1, "batch_size": 2})
    assert (config.data.ignore_index, config.model.num_classes) == (255, 1)
    result = train(config)
    assert result.model_path.is_file()
