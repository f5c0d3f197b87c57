from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetkit.data.regions import can_stream, image_size, open_rows
from unetkit.errors import UserError

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("layout", ["tiled-zlib", "striped", "uncompressed", "bigtiff"])
def test_tiff_rows_match_the_image(tmp_path: Path, layout: str) -> None:
    image = RNG.integers(0, 65535, (517, 300), dtype=np.uint16)
    options = {"tiled-zlib": {"tile": (64, 64), "compression": "zlib"}, "striped": {"rowsperstrip": 7,
               "compression": "zlib"}, "uncompressed": {}, "bigtiff": {"bigtiff": True, "tile": (32, 32)}}[layout]
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, image, **options)
    assert image_size(path) == (517, 300) and can_stream(path)
    with open_rows(path, 1) as rows:
        assert (rows.height, rows.width, rows.dtype) == (517, 300, np.uint16)
        assert np.array_equal(rows(100, 356), image[100:356, :, None])
        assert np.array_equal(rows(500, 517), image[500:, :, None])


def test_rgb_tiff_interleaved_and_planar(tmp_path: Path) -> None:
    image = RNG.integers(0, 255, (90, 70, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", image, tile=(32, 32), photometric="rgb")
    tifffile.imwrite(tmp_path / "p.tif", np.moveaxis(image, -1, 0), photometric="rgb", planarconfig="separate")
    for name in ("c.tif", "p.tif"):
        assert image_size(tmp_path / name) == (90, 70)
        with open_rows(tmp_path / name, 3) as rows:
            assert np.array_equal(rows(10, 50), image[10:50])


def test_npy_is_memory_mapped_and_gray_expands_to_rgb(tmp_path: Path) -> None:
    image = RNG.random((40, 30)).astype(np.float32)
    np.save(tmp_path / "a.npy", image)
    assert image_size(tmp_path / "a.npy") == (40, 30)
    with open_rows(tmp_path / "a.npy", 3) as rows:
        assert isinstance(rows._array, np.memmap)
        band = rows(5, 9)
        assert band.shape == (4, 30, 3) and np.array_equal(band[:, :, 2], image[5:9])


def test_png_is_read_whole_and_its_size_comes_from_the_header(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((33, 45), np.uint8)).save(tmp_path / "a.png")
    assert image_size(tmp_path / "a.png") == (33, 45) and not can_stream(tmp_path / "a.png")
    with open_rows(tmp_path / "a.png", 1) as rows:
        assert rows(0, 33).shape == (33, 45, 1)


def test_colour_tiff_for_a_gray_model_names_the_file(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "c.tif", RNG.integers(0, 255, (20, 20, 3), dtype=np.uint8), photometric="rgb")
    with open_rows(tmp_path / "c.tif", 1) as rows, pytest.raises(UserError, match="c.tif: image has 3 distinct"):
        rows(0, 10)


def test_corrupt_tiff_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(UserError, match="bad.tif: cannot read image"):
        image_size(tmp_path / "bad.tif")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("suffix", [".tif", ".npy"])
def test_streamed_rows_with_non_finite_pixels_are_refused(tmp_path: Path, bad: float, suffix: str) -> None:
    """Predict streams large TIFF/.npy by rows: a band holding NaN/inf stops with the count and the rows."""
    image = np.zeros((100, 30), np.float32)
    image[60, 3:5] = bad
    path = tmp_path / f"f{suffix}"
    if suffix == ".npy":
        np.save(path, image)
    else:
        tifffile.imwrite(path, image, tile=(16, 16))
    with open_rows(path, 1) as rows:
        assert rows(0, 50).shape == (50, 30, 1)
        with pytest.raises(UserError) as caught:
            rows(50, 100)
    assert str(caught.value).startswith(f"{path}: 2 of 1500 pixels in rows 50-100 are NaN or infinite;")


@pytest.mark.parametrize("layout", ["interleaved", "planar", "npy"])
def test_region_reads_a_window_and_keeps_stored_channels(tmp_path: Path, layout: str) -> None:
    """region(y0, y1, x0, x1) equals slicing the decoded image; channels=None keeps the file's 3 channels."""
    image = np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    if layout == "npy":
        path = tmp_path / "a.npy"
        np.save(path, image)
    else:
        path = tmp_path / "a.tif"
        data = np.moveaxis(image, -1, 0) if layout == "planar" else image
        tifffile.imwrite(path, data, tile=(32, 32), planarconfig="separate" if layout == "planar" else "contig",
                        photometric="rgb")
    with open_rows(path, None) as reader:
        assert reader.channels == 3
        np.testing.assert_array_equal(reader.region(5, 41, 17, 80), image[5:41, 17:80])
        np.testing.assert_array_equal(reader(3, 9), image[3:9])


def test_head_or_whole_reads_only_the_first_rows_of_a_large_tiff(tmp_path: Path) -> None:
    """A 40000 x 200 TIFF (8 Mpx, over LARGE_PIXELS) gives its first 2**22 // 200 = 20971 rows; a small one all."""
    from unetkit.data.regions import LARGE_PIXELS, head_or_whole

    tall = np.arange(40000 * 200, dtype=np.uint32).reshape(40000, 200).astype(np.uint8)
    tifffile.imwrite(tmp_path / "tall.tif", tall, tile=(256, 256))
    head = head_or_whole(tmp_path / "tall.tif")
    assert head.shape == (LARGE_PIXELS // 200, 200, 1) == (20971, 200, 1)
    assert np.array_equal(head[:, :, 0], tall[:20971])
    tifffile.imwrite(tmp_path / "small.tif", tall[:300])
    assert head_or_whole(tmp_path / "small.tif").shape == (300, 200, 1)
