from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from unetkit.data.tiled_writer import TiledTiffWriter


@pytest.mark.parametrize("samples", [1, 3])
def test_uneven_bands_make_one_tiled_tiff(tmp_path: Path, samples: int) -> None:
    shape = (700, 517) + ((samples,) if samples > 1 else ())
    image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    with TiledTiffWriter(tmp_path / "m.tif", 700, 517, np.uint8, samples) as writer:
        for y0, y1 in [(0, 1), (1, 200), (200, 256), (256, 600), (600, 700)]:
            writer.write(image[y0:y1])
    with tifffile.TiffFile(tmp_path / "m.tif") as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.tilelength == 256 and page.compression == 8  # zlib
        assert np.array_equal(page.asarray(), image)
    assert [p.name for p in tmp_path.iterdir()] == ["m.tif"]


def test_an_error_midway_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), TiledTiffWriter(tmp_path / "m.tif", 600, 300, np.float32) as writer:
        writer.write(np.zeros((300, 300), np.float32))
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_missing_rows_are_refused_and_leave_nothing(tmp_path: Path) -> None:
    writer = TiledTiffWriter(tmp_path / "m.tif", 600, 300, np.uint8)
    writer.write(np.zeros((599, 300), np.uint8))
    with pytest.raises(ValueError, match="599 of 600 rows"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("samples", [1, 3])
def test_tiles_stay_valid_for_a_consumer_that_holds_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         samples: int) -> None:
    """Newer tifffile releases read tiles ahead (2026.9.20 corrupted masks): every yielded tile must be its own
    array, never a view of a buffer the writer overwrites once it moves on. This consumer takes all tiles first."""
    real_imwrite = tifffile.imwrite

    def hoarding_imwrite(path, data, **kwargs):  # type: ignore[no-untyped-def]
        held = list(data)  # every tile kept, read only after the writer produced the last one
        return real_imwrite(path, iter(held), **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", hoarding_imwrite)
    shape = (700, 517) + ((samples,) if samples > 1 else ())
    image = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    with TiledTiffWriter(tmp_path / "m.tif", 700, 517, np.uint8, samples) as writer:
        for y0 in range(0, 700, 100):
            writer.write(image[y0 : y0 + 100])
    assert np.array_equal(tifffile.imread(tmp_path / "m.tif"), image)
