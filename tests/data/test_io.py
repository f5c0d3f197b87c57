from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.data.special_files import call_or_unblock, make_special
from unetkit.data.io import _decode_plain_png, read_array, to_channels, write_png, write_tiff
from unetkit.errors import UserError
from unetkit.fileio import file_sha256


def test_png_8_and_16_bit_keep_their_dtype(tmp_path: Path) -> None:
    eight = np.arange(12, dtype=np.uint8).reshape(3, 4)
    sixteen = (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)
    write_png(tmp_path / "a.png", eight)
    Image.fromarray(sixteen).save(tmp_path / "b.png")
    a, b = read_array(tmp_path / "a.png"), read_array(tmp_path / "b.png")
    assert a.shape == (3, 4, 1) and a.dtype == np.uint8 and a[2, 3, 0] == 11
    assert b.dtype == np.uint16 and b[2, 3, 0] == 55000


def test_float_tiff_and_channel_first_stack(tmp_path: Path) -> None:
    values = np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5)
    write_tiff(tmp_path / "f.tif", values)
    assert np.array_equal(read_array(tmp_path / "f.tif")[:, :, 0], values)
    stack = np.zeros((3, 16, 20), np.uint16)
    tifffile.imwrite(tmp_path / "s.tiff", stack, photometric="minisblack")
    assert read_array(tmp_path / "s.tiff").shape == (16, 20, 3)


def test_jpeg_reads_as_rgb(tmp_path: Path) -> None:
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(tmp_path / "j.jpg")
    image = read_array(tmp_path / "j.jpg")
    assert image.shape == (8, 8, 3)
    assert to_channels(image, 1, "j.jpg").shape == (8, 8, 1)


def test_rgb_with_equal_channels_loads_as_gray_and_colour_is_refused() -> None:
    gray_rgb = np.repeat(np.arange(16, dtype=np.uint8).reshape(4, 4, 1), 3, axis=2)
    assert to_channels(gray_rgb, 1, "g.png").shape == (4, 4, 1)
    colour = gray_rgb.copy()
    colour[0, 0] = (255, 0, 0)
    with pytest.raises(UserError, match=r"c\.png: image has 3 distinct channels but the model expects 1"):
        to_channels(colour, 1, "c.png")
    assert to_channels(gray_rgb[:, :, :1], 3, "g.png").shape == (4, 4, 3)


def test_opaque_alpha_is_dropped() -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 255
    assert to_channels(rgba, 3, "a.png").shape == (2, 2, 3)


def test_truncated_png_names_the_file(tmp_path: Path) -> None:
    write_png(tmp_path / "t.png", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"t\.png: cannot read image"):
        read_array(tmp_path / "t.png")


def test_plain_pngs_decode_as_pillow_does_and_others_go_to_pillow(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Gray, RGB, 16-bit gray and interlaced PNGs take OpenCV's decoder (`_decode_plain_png` answers) and read exactly as
    Pillow reads them; a text chunk, a palette and a damaged IDAT (a flipped byte: its CRC fails) go to Pillow, the
    damaged one as a one-line error naming the file, with nothing printed by libpng."""
    rng = np.random.default_rng(4)
    gray, rgb = rng.integers(0, 256, (37, 53), dtype=np.uint8), rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    plain = {"gray.png": (Image.fromarray(gray), {}), "rgb.png": (Image.fromarray(rgb), {}),
             "deep.png": (Image.fromarray(gray.astype(np.uint16) * 257), {}),
             "interlaced.png": (Image.fromarray(rgb), {"interlace": 1})}
    for name, (image, options) in plain.items():
        image.save(tmp_path / name, **options)
        data = (tmp_path / name).read_bytes()
        assert _decode_plain_png(data) is not None, name
        with Image.open(tmp_path / name) as pillow:
            expected = np.asarray(pillow).astype(np.uint16 if name == "deep.png" else np.uint8)
        array = read_array(tmp_path / name)
        assert array.dtype == expected.dtype and np.array_equal(array[..., 0] if expected.ndim == 2 else array, expected)
    text = PngInfo()
    text.add_text("Software", "test")
    Image.fromarray(gray).save(tmp_path / "text.png", pnginfo=text)
    Image.fromarray(gray).convert("P").save(tmp_path / "palette.png")
    assert _decode_plain_png((tmp_path / "text.png").read_bytes()) is None
    assert _decode_plain_png((tmp_path / "palette.png").read_bytes()) is None
    damaged = bytearray((tmp_path / "gray.png").read_bytes())
    damaged[damaged.index(b"IDAT") + 20] ^= 0xFF
    (tmp_path / "damaged.png").write_bytes(bytes(damaged))
    capfd.readouterr()
    with pytest.raises(UserError, match=r"damaged\.png: cannot read image") as error:
        read_array(tmp_path / "damaged.png")
    assert "\n" not in str(error.value) and capfd.readouterr() == ("", "")


def test_unknown_extension_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.bmp").write_bytes(b"BM")
    with pytest.raises(UserError, match="unknown image extension '.bmp'"):
        read_array(tmp_path / "x.bmp")


def test_write_png_leaves_no_temporary_files(tmp_path: Path) -> None:
    write_png(tmp_path / "out" / "m.png", np.zeros((5, 7), np.uint8))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["m.png"]
    assert (tmp_path / "out" / "m.png").stat().st_size > 50


def test_palette_png_is_colour_for_images_and_indices_for_masks(tmp_path: Path) -> None:
    indices = np.array([[0, 1], [2, 1]], np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    image.save(tmp_path / "p.png")
    assert read_array(tmp_path / "p.png", palette_indices=True)[:, :, 0].tolist() == [[0, 1], [2, 1]]
    colours = read_array(tmp_path / "p.png")
    assert colours.shape == (2, 2, 3) and colours[0, 1].tolist() == [255, 0, 0]


def test_16_bit_colour_png_is_refused_not_truncated(tmp_path: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x12\x34" * 3 * 2 for _ in range(2))  # 2x2 RGB, 16 bits per sample
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 16, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    (tmp_path / "rgb16.png").write_bytes(png)
    with pytest.raises(UserError, match=r"rgb16\.png: 16-bit colour PNG is not supported"):
        read_array(tmp_path / "rgb16.png")


def test_written_files_get_ordinary_permissions(tmp_path: Path) -> None:
    import os

    umask = os.umask(0o022)
    try:
        write_png(tmp_path / "perm.png", np.zeros((2, 2), np.uint8))
    finally:
        os.umask(umask)
    assert (tmp_path / "perm.png").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("kind", ["tiff-gray", "tiff-rgb", "npy"])
def test_non_finite_float_pixels_are_refused_with_their_count(tmp_path: Path, bad: float, kind: str) -> None:
    """NaN/inf pixels trained NaN weights (exit 0) and predicted empty masks: refused at read time."""
    image = np.ones((4, 5, 3) if kind == "tiff-rgb" else (4, 5), np.float32)
    image[0, 1] = bad
    image[2, 2] = bad
    image[3, 4] = bad
    path = tmp_path / ("f.npy" if kind == "npy" else "f.tif")
    if kind == "npy":
        np.save(path, image)
    else:
        tifffile.imwrite(path, image, photometric="rgb" if image.ndim == 3 else "minisblack")
    with pytest.raises(UserError) as caught:
        read_array(path)
    assert str(caught.value) == (f"{path}: 3 of 20 pixels are NaN or infinite; unetkit needs finite values "
                                 "(replace them, e.g. with numpy.nan_to_num, and save the file again)")


def _png(path: Path, size: int) -> Path:
    Image.fromarray(np.zeros((size, size), np.uint8)).save(path)
    return path


@pytest.mark.parametrize("size", [40, 50])  # 1600 px: Pillow warns; 2500 px (over twice the limit): Pillow raises
@pytest.mark.parametrize("reader", ["read_array", "image_size"])
def test_decompression_bomb_is_one_line_and_nothing_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str], size: int,
                                                         reader: str) -> None:
    """The warning used to print two lines before the error (predict reads the size first)."""
    import warnings

    from unetkit.data.regions import image_size

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = _png(tmp_path / "big.png", size)
    with warnings.catch_warnings(record=True) as caught, pytest.raises(UserError) as error:
        warnings.simplefilter("always")
        (read_array if reader == "read_array" else image_size)(path)
    assert caught == []
    message = str(error.value)
    assert message.startswith(f"{path}: refused by Pillow's decompression-bomb guard (") and "\n" not in message
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("kind", ["fifo", "loop", "broken"])
def test_fifos_and_broken_links_are_named_not_opened(tmp_path: Path, kind: str) -> None:
    """They used to read "file not found" (train) or hang forever (predict, on a FIFO)."""
    from unetkit.data.regions import image_size, open_rows

    expected = make_special(tmp_path / "x.png", kind)
    for function in (read_array, image_size):
        result = call_or_unblock(function, tmp_path / "x.png")
        assert isinstance(result, UserError) and str(result) == expected
    tif = tmp_path / "y.tif"
    expected = make_special(tif, kind)

    def rows(path: Path) -> None:
        with open_rows(path, 1):
            pass

    result = call_or_unblock(rows, tif)
    assert isinstance(result, UserError) and str(result) == expected


@pytest.mark.parametrize("name", ["m.png", "m.tif", "m.npy"])
def test_hashes_record_the_files_sha256_and_decode_the_same(tmp_path: Path, name: str) -> None:
    array = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 3)
    path = tmp_path / name
    if name.endswith(".png"):
        write_png(path, array)
    elif name.endswith(".tif"):
        write_tiff(path, array)
    else:
        np.save(path, array)
    hashes: dict[Path, str] = {}
    hashed = read_array(path, hashes=hashes)
    assert hashes == {path: file_sha256(path)}
    assert np.array_equal(hashed, read_array(path))
