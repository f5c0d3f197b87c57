"""Files as they come (data/io.py): each odd file is one line naming it, its dtype or shape and what is
expected, or follows a documented rule (channels-first arrays, PNG transparency, EXIF orientation)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli.test_cli import assert_one_line_error, run_cli
from unetkit.data.io import read_array, to_channels
from unetkit.data.regions import image_size, open_rows
from unetkit.errors import UserError
from unetkit.training.recipes import detected_channels


@pytest.mark.parametrize("array,expected", [
    (np.zeros((8, 8), np.complex64), r"c\.npy: array of complex dtype complex64; expected real numbers"),
    (np.zeros((8, 8), [("r", "u1"), ("g", "u1")]), r"c\.npy: array of structured dtype .*; expected plain numbers"),
    (np.zeros((32, 32, 0), np.uint8), r"c\.npy: array of shape \(32, 32, 0\) has no channels; expected \(H, W\) or "
                                      r"\(H, W, C\) with C >= 1"),
])
def test_odd_arrays_are_one_line(tmp_path: Path, array: np.ndarray, expected: str) -> None:
    np.save(tmp_path / "c.npy", array)
    with pytest.raises(UserError, match=expected):
        read_array(tmp_path / "c.npy")


def test_complex_image_refused_by_train(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for i in range(4):
        np.save(_mkdir(tmp_path / "d" / "images") / f"{i}.npy", np.ones((8, 8), np.complex64))
        np.save(_mkdir(tmp_path / "d" / "masks") / f"{i}.npy", np.eye(8, dtype=np.uint8))
    code, _, err = run_cli(capsys, "-q", "train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "run"),
                           "--in-channels", "1")
    assert_one_line_error(code, err, "0.npy: array of complex dtype complex64")
    assert not (tmp_path / "run").exists()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_channels_first_arrays_are_moved_with_one_line_per_folder(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    stack = np.arange(3 * 32 * 40, dtype=np.float32).reshape(3, 32, 40) / 4000
    for name in ("a.npy", "b.npy"):
        np.save(tmp_path / name, stack)
    with caplog.at_level(logging.INFO, logger="unetkit"):
        arrays = [read_array(tmp_path / name) for name in ("a.npy", "b.npy")]
    assert arrays[0].shape == (32, 40, 3) and np.array_equal(arrays[0][:, :, 2], stack[2])
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}/a.npy: (C, H, W) array (3, 32, 40) read as channels-first (H, W, C); so is every .npy of this "
        f"kind in {tmp_path}"]
    assert image_size(tmp_path / "a.npy") == (32, 40)
    with open_rows(tmp_path / "a.npy", None) as reader:
        assert np.array_equal(reader(5, 7), arrays[0][5:7])


def test_png_alpha_is_dropped_unless_asked_for(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A gray + alpha PNG whose alpha varies: detected as 1 channel, read as its gray; kept with 2 channels."""
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    alpha = np.where(np.arange(64).reshape(8, 8) % 2, 255, 0).astype(np.uint8)
    (tmp_path / "images").mkdir()
    Image.fromarray(np.dstack([gray, alpha]), "LA").save(tmp_path / "images" / "g.png")
    stored = read_array(tmp_path / "images" / "g.png")
    assert stored.shape == (8, 8, 2)
    with caplog.at_level(logging.INFO, logger="unetkit"):
        one = to_channels(stored, 1, tmp_path / "images" / "g.png")
    assert np.array_equal(one[:, :, 0], gray)
    assert "g.png: transparency (alpha) dropped: the model expects 1 channel(s)" in caplog.text
    assert to_channels(stored, 2, tmp_path / "images" / "g.png").shape == (8, 8, 2)
    tiff_like = np.dstack([gray, alpha])
    with pytest.raises(UserError, match=r"g\.tif: image has a transparency channel that is not uniform"):
        to_channels(tiff_like, 1, tmp_path / "g.tif")


def test_png_alpha_detected_as_gray(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(np.dstack([gray, gray[::-1]]), "LA").save(tmp_path / "images" / "g.png")
    assert detected_channels(str(tmp_path)) == 1


@pytest.mark.parametrize("orientation,shape", [(1, (6, 10)), (3, (6, 10)), (6, (10, 6)), (8, (10, 6))])
def test_exif_orientation_turns_image_and_mask_alike(tmp_path: Path, orientation: int, shape: tuple[int, int]) -> None:
    """A 10 x 6 picture marked with an orientation: read upright, its size from the header agrees."""
    stored = np.zeros((6, 10), np.uint8)
    stored[0, 0] = 255  # the stored top-left pixel
    exif = Image.Exif()
    exif[0x0112] = orientation
    for name in ("i.png", "m.png"):
        Image.fromarray(stored).save(tmp_path / name, exif=exif)
    image, mask = read_array(tmp_path / "i.png"), read_array(tmp_path / "m.png")
    assert image.shape[:2] == shape == image_size(tmp_path / "i.png")
    assert np.array_equal(image, mask)
    expected = {1: (0, 0), 3: (5, 9), 6: (0, 5), 8: (9, 0)}[orientation]  # where the marked pixel lands
    assert tuple(int(v) for v in np.argwhere(image[:, :, 0] == 255)[0]) == expected
