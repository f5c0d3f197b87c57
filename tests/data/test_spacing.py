"""Pixel sizes read from tiny TIFF and PNG files, the placeholder rule, --spacing text, one unit per evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetkit.data.pairing import Pair
from unetkit.data.spacing import PixelSpacing, parse_spacing, read_spacing, spacings_for
from unetkit.errors import UserError
from unetkit.measures import MeasureSet

PLANE = np.zeros((8, 8), np.uint8)


def _tiff(path: Path, **options: object) -> Path:
    tifffile.imwrite(path, PLANE, **options)
    return path


def _png(path: Path, dpi: tuple[float, float] | None = None) -> Path:
    Image.fromarray(PLANE).save(path, **({"dpi": dpi} if dpi else {}))
    return path


def test_tiff_resolutions_become_millimetres_per_axis(tmp_path: Path) -> None:
    # 400 pixels per cm across (x), 200 down (y): 0.025 mm wide, 0.05 mm tall
    found = read_spacing(_tiff(tmp_path / "cm.tif", resolution=(400, 200), resolutionunit="CENTIMETER"))
    assert (found.dy, found.dx, found.unit) == (pytest.approx(0.05), pytest.approx(0.025), "mm")
    found = read_spacing(_tiff(tmp_path / "inch.tif", resolution=(1270, 1270), resolutionunit="INCH"))
    assert (found.dy, found.dx, found.unit) == (pytest.approx(0.02), pytest.approx(0.02), "mm")


def test_imagej_and_ome_keep_the_unit_they_name(tmp_path: Path) -> None:
    imagej = read_spacing(_tiff(tmp_path / "ij.tif", imagej=True, resolution=(1 / 0.65, 1 / 0.5),
                                metadata={"unit": "micron"}))
    assert (imagej.dy, imagej.dx, imagej.unit) == (pytest.approx(0.5), pytest.approx(0.65, rel=1e-6), "um")
    ome = read_spacing(_tiff(tmp_path / "ome.tif", ome=True, metadata={
        "PhysicalSizeX": 0.3, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": 0.4, "PhysicalSizeYUnit": "µm"}))
    assert (ome.dy, ome.dx, ome.unit, ome.source) == (0.4, 0.3, "um", "OME metadata")


def test_png_phys_in_pixels_per_metre(tmp_path: Path) -> None:
    found = read_spacing(_png(tmp_path / "a.png", dpi=(254, 508)))  # stored as 10000 and 20000 pixels per metre
    assert (found.dy, found.dx, found.unit) == (pytest.approx(0.05), pytest.approx(0.1), "mm")


@pytest.mark.parametrize("writer", ["png72", "png96", "tiff72", "tiff_unit_none", "tiff_1_per_cm", "png_none",
                                    "tiff_none"])
def test_files_without_a_measured_size_stay_in_pixels(tmp_path: Path, writer: str) -> None:
    path = {"png72": lambda: _png(tmp_path / "a.png", (72, 72)), "png96": lambda: _png(tmp_path / "a.png", (96, 96)),
            "tiff72": lambda: _tiff(tmp_path / "a.tif", resolution=(72, 72), resolutionunit="INCH"),
            "tiff_unit_none": lambda: _tiff(tmp_path / "a.tif", resolution=(300, 300), resolutionunit="NONE"),
            "tiff_1_per_cm": lambda: _tiff(tmp_path / "a.tif", resolution=(1, 1), resolutionunit="CENTIMETER"),
            "png_none": lambda: _png(tmp_path / "a.png"),
            "tiff_none": lambda: (Image.fromarray(PLANE).save(tmp_path / "a.tif"), tmp_path / "a.tif")[1]}[writer]()
    found = read_spacing(path)
    assert (found.dy, found.dx, found.unit) == (1.0, 1.0, "px")


def test_spacing_text_needs_its_unit_or_px() -> None:
    assert parse_spacing("0.5,0.25mm") == PixelSpacing(0.5, 0.25, "mm", "--spacing")
    assert parse_spacing("0.65,0.65 µm").unit == "um"
    assert parse_spacing("px").unit == "px"
    for text in ("0.5,0.5", "0.5mm", "0,1mm", "1,1furlong", "1,2,3mm"):
        with pytest.raises(UserError, match="with their unit"):
            parse_spacing(text)


def test_one_unit_per_evaluation(tmp_path: Path) -> None:
    mask = _png(tmp_path / "mask.png")
    in_mm = Pair("a", _tiff(tmp_path / "a.tif", resolution=(1000, 1000), resolutionunit="CENTIMETER"), mask)
    in_um = Pair("b", _tiff(tmp_path / "b.tif", imagej=True, resolution=(0.5, 0.5), metadata={"unit": "um"}), mask)
    unsized = Pair("c", _png(tmp_path / "c.png"), mask)
    spacings, unit = spacings_for([in_mm, in_um])
    assert unit == "um" and spacings["a"].yx == pytest.approx((10.0, 10.0)) and spacings["b"].yx == (2.0, 2.0)
    with pytest.raises(UserError) as refused:
        spacings_for([in_mm, unsized])
    message = str(refused.value)
    assert "\n" not in message and str(in_mm.image) in message and str(unsized.image) in message
    assert "--spacing px" in message
    given = parse_spacing("px")
    assert spacings_for([in_mm, unsized], given) == ({"a": given, "c": given}, "px")


def test_the_mask_size_counts_where_the_image_has_none(tmp_path: Path) -> None:
    pair = Pair("a", _png(tmp_path / "a.png"), _tiff(tmp_path / "m.tif", resolution=(100, 100),
                                                     resolutionunit="CENTIMETER"))
    spacings, unit = spacings_for([pair])
    assert unit == "mm" and spacings["a"].yx == pytest.approx((0.1, 0.1))


def test_a_shifted_square_read_with_its_file_size_has_hd95_k_times_dx(tmp_path: Path) -> None:
    truth = np.zeros((40, 40), np.uint8)
    truth[5:25, 5:25] = 1
    shifted = np.roll(truth, 3, axis=1)  # 3 pixels across
    wide = read_spacing(_tiff(tmp_path / "a.tif", resolution=(400, 200), resolutionunit="CENTIMETER"))
    square = read_spacing(_png(tmp_path / "b.png", dpi=(1270, 1270)))  # 50000 pixels per metre: 0.02 mm
    anisotropic, isotropic = MeasureSet(("hd95",)), MeasureSet(("hd95", "assd"))
    anisotropic.add(shifted, truth, spacing=wide.yx)  # pixels 0.025 mm wide, 0.05 mm tall
    isotropic.add(shifted, truth, spacing=square.yx)
    assert anisotropic.summary()["hd95"] == pytest.approx(3 * 0.025, abs=1e-12)
    # as in pixels (tests/test_boundary.py): HD95 = k, ASSD = k / 2, times the pixel size
    assert isotropic.summary()["hd95"] == pytest.approx(3 * 0.02, abs=1e-12)
    assert isotropic.summary()["assd"] == pytest.approx(3 * 0.02 / 2, abs=1e-12)
