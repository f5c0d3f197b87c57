from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TGS_DIR, write_gray_png
from tests.data.special_files import call_or_unblock, make_special
from unetkit.data.dataset import load_labelled
from unetkit.data.pairing import find_pairs
from unetkit.data.synthetic import generate_synthetic, synthetic_example
from unetkit.errors import UserError


def test_synthetic_set_is_deterministic_and_in_the_user_layout(tmp_path: Path) -> None:
    root = generate_synthetic(tmp_path / "s", 30, size=101, seed=5)
    data = load_labelled(root, in_channels=1, num_classes=1, show_progress=False)
    assert data.images.shape == (30, 101, 101, 1) and data.masks.shape == (30, 101, 101)
    assert set(np.unique(data.masks)) <= {0, 1}
    empty = (data.coverage() == 0).sum()
    assert 3 <= empty <= 18  # about 30% empty
    assert data.coverage().max() > 0.3
    image, mask = synthetic_example(4, size=101, seed=5)
    assert np.array_equal(image, data.images[4, :, :, 0]) and np.array_equal(mask > 0, data.masks[4] > 0)


def test_pairs_are_matched_by_stem(synthetic_dir: Path) -> None:
    pairs = find_pairs(synthetic_dir)
    assert len(pairs) == 12 and all(p.image.stem == p.mask.stem for p in pairs)


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="data folder not found"):
        find_pairs(tmp_path / "nope")
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "masks").mkdir()
    with pytest.raises(UserError, match="no images found"):
        find_pairs(tmp_path / "d")


def test_image_without_mask_is_named(synthetic_dir: Path) -> None:
    (synthetic_dir / "masks" / "syn_00003.png").unlink()
    with pytest.raises(UserError, match=r"1 of \d+ images without a mask \(syn_00003\.png\)"):
        find_pairs(synthetic_dir)


def test_mask_of_another_size_is_named(synthetic_dir: Path) -> None:
    write_gray_png(synthetic_dir / "masks" / "syn_00002.png", np.zeros((40, 41), np.uint8))
    with pytest.raises(UserError, match=r"syn_00002\.png: mask is 41x40 but its image is 40x40"):
        load_labelled(synthetic_dir, 1, 1, show_progress=False)


def test_mixed_sizes_need_the_resize_policy(synthetic_dir: Path) -> None:
    write_gray_png(synthetic_dir / "images" / "syn_00005.png", np.zeros((50, 60), np.uint8))
    write_gray_png(synthetic_dir / "masks" / "syn_00005.png", np.zeros((50, 60), np.uint8))
    with pytest.raises(UserError, match="train on patches: leave --patch-size unset or give one; or --size-policy resize"):
        load_labelled(synthetic_dir, 1, 1, show_progress=False)
    data = load_labelled(synthetic_dir, 1, 1, resize_to=32, show_progress=False)
    assert data.images.shape == (12, 32, 32, 1) and data.images.dtype == np.float32
    assert data.masks.shape == (12, 32, 32)


@pytest.mark.skipif(not TGS_DIR.is_dir(), reason="TGS data absent (the checks above cover the loader)")
def test_real_tgs_masks_16_bit_and_8_bit_empty() -> None:
    pairs = find_pairs(TGS_DIR)
    assert len(pairs) == 3001
    from unetkit.data.dataset import load_pair
    from unetkit.data.io import read_array

    depths = {read_array(p.mask).dtype for p in pairs[:40]}
    assert depths == {np.dtype(np.uint8), np.dtype(np.uint16)}
    loaded = [load_pair(p, 1, 1) for p in pairs[:40]]
    assert all(image.shape == (101, 101, 1) and mask.max() <= 1 for image, mask in loaded)


@pytest.mark.parametrize("kind", ["fifo", "loop", "broken"])
@pytest.mark.parametrize("folder", ["images", "masks"])
def test_special_files_in_a_data_folder_are_named_and_never_opened(synthetic_dir: Path, kind: str, folder: str) -> None:
    """A FIFO named x.png hung predict forever; loops and FIFOs read "file not found" in train."""
    from unetkit.data.naming import list_images

    expected = make_special(synthetic_dir / folder / "x.png", kind)
    for function, argument in ((find_pairs, synthetic_dir), (list_images, synthetic_dir / folder)):
        result = call_or_unblock(function, argument)
        assert isinstance(result, UserError) and str(result) == expected


@pytest.mark.parametrize("role", ["images", "masks"])
def test_non_finite_pixels_stop_loading_naming_the_file(synthetic_dir: Path, role: str) -> None:
    import tifffile

    for name in ("images", "masks"):
        (synthetic_dir / name / "syn_00004.png").unlink()
    values = np.zeros((40, 40), np.float32)
    values[5, 5] = np.nan
    image = values if role == "images" else np.ones((40, 40), np.float32)
    mask = values if role == "masks" else np.zeros((40, 40), np.float32)
    tifffile.imwrite(synthetic_dir / "images" / "syn_00004.tif", image)
    tifffile.imwrite(synthetic_dir / "masks" / "syn_00004.tif", mask)
    with pytest.raises(UserError, match=rf"{role}/syn_00004\.tif: 1 of 1600 pixels are NaN or infinite"):
        load_labelled(synthetic_dir, 1, 1, show_progress=False)


@pytest.mark.parametrize("kwargs,expected", [
    ({"n": 0}, "the number of pairs (n, --n) must be at least 1, got 0"),
    ({"n": -5}, "the number of pairs (n, --n) must be at least 1, got -5"),
    ({"n": 3, "size": 0}, "the image size (--size) must be at least 8 pixels, got 0"),
    ({"n": 3, "size": -101}, "the image size (--size) must be at least 8 pixels, got -101"),
    ({"n": 3, "seed": -1}, "the seed (--seed) must be a whole number of at least 0, got -1"),
    ({"n": -1, "size": 0}, "got -1; the image size (--size) must be at least 8 pixels, got 0"),
])
def test_synthetic_arguments_that_make_no_set_are_one_line_and_write_nothing(tmp_path: Path, kwargs: dict,
                                                                             expected: str) -> None:
    """`synth --size 0` was a traceback, `--n -5` printed "-5 pairs written"."""
    with pytest.raises(UserError) as caught:
        generate_synthetic(tmp_path / "syn", **kwargs)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'syn'}: cannot make a synthetic set: ") and message.endswith(expected)
    assert "\n" not in message and not (tmp_path / "syn").exists()


def test_synth_writes_into_an_empty_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "s" / "images").mkdir(parents=True)
    root = generate_synthetic(tmp_path / "s", 2, size=16, seed=0)
    assert sorted(p.name for p in (root / "masks").iterdir()) == ["syn_00000.png", "syn_00001.png"]
