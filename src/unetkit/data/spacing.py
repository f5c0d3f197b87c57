"""The pixel size of an image file, so that boundary distances (HD95, ASSD, NSD) come in physical units.

Where a file says its pixel size, in the order looked at:
- OME-TIFF: `PhysicalSizeY` / `PhysicalSizeX` of the first Pixels (µm by the OME schema's default);
- ImageJ TIFF: X/YResolution, pixels per the unit ImageJ names in its metadata (`unit=micron`);
- other TIFF: X/YResolution with ResolutionUnit inch or centimetre (unit "none" is an aspect ratio);
- PNG pHYs (pixels per metre), JPEG's JFIF density: Pillow's `info["dpi"]`.

72 or 96 pixels per inch (rounded: what editors, screenshot tools and web exports write when they know nothing) and
under 3 per inch (other writers' "unset") are placeholders: the file stays in pixels. A scanner's 300 or 1200 dpi is
a real size. The mask's size counts only where the image has none (label maps saved by ImageJ, images exported as
plain PNG).

`spacings_for` gives every pair of one evaluation its size in one unit: physical units are converted to the finest
of them; a mix of sized and unsized files is refused, because a mean of millimetres and pixels means nothing and
either choice made silently would mislabel figures.
"""

from __future__ import annotations

import logging
import math
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tifffile

from unetkit.data.io import ROTATING, TIFF_EXTENSIONS, check_regular_file, first_line, is_image_file, open_pillow
from unetkit.data.pairing import Pair
from unetkit.errors import UserError

log = logging.getLogger("unetkit")

PIXELS = "px"
UNITS: dict[str, float] = {"nm": 1e-9, "um": 1e-6, "mm": 1e-3, "cm": 1e-2, "m": 1.0, "in": 0.0254}  # unetkit's names -> metres
_ALIASES = {"nanometer": "nm", "nanometre": "nm", "µm": "um", "μm": "um", "\\u00b5m": "um", "micron": "um", "microns": "um",
            "micrometer": "um", "micrometre": "um", "millimeter": "mm", "millimetre": "mm", "centimeter": "cm",
            "centimetre": "cm", "meter": "m", "metre": "m", "inch": "in", "inches": "in", "pixel": PIXELS, "pixels": PIXELS}
PLACEHOLDER_DPI = (72, 96)  # editors' default resolutions, in whole pixels per inch
MIN_DPI = 3.0  # below this many pixels per inch a resolution is a writer's "unset" (1 per inch or per cm)
_TIFF_UNIT_MM = {2: 25.4, 3: 10.0}  # ResolutionUnit inch, centimetre -> millimetres


@dataclass(frozen=True)
class PixelSpacing:
    """The size of one pixel, (dy, dx) in `unit` ("px": no physical size), and where it was read."""

    dy: float = 1.0
    dx: float = 1.0
    unit: str = PIXELS
    source: str = "no pixel size in the file"

    @property
    def physical(self) -> bool:
        return self.unit != PIXELS

    @property
    def yx(self) -> tuple[float, float]:
        return (self.dy, self.dx)

    def to(self, unit: str) -> PixelSpacing:
        scale = UNITS[self.unit] / UNITS[unit]
        return PixelSpacing(self.dy * scale, self.dx * scale, unit, self.source)


def unit_name(text: str) -> str | None:
    """The unit unetkit writes for `text` ("micron", "µm", "mm", "px", ...), None when it is no length unit."""
    name = _ALIASES.get(text.strip().lower(), text.strip().lower())
    return name if name in UNITS or name == PIXELS else None


def parse_spacing(text: str) -> PixelSpacing:
    """`--spacing` text: "DY,DXUNIT" (e.g. "0.5,0.5mm", "0.65,0.65um") or "px" (pixels, whatever the files say)."""
    text = text.strip()
    if unit_name(text) == PIXELS:
        return PixelSpacing(source="--spacing px")
    numbers = text.rstrip("abcdefghijklmnopqrstuvwxyzµμ").strip()
    unit = unit_name(text[len(numbers):].strip() or "?")
    try:
        values = tuple(float(v) for v in numbers.split(","))
    except ValueError:
        values = ()
    if unit is None or unit == PIXELS or len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise UserError(f"--spacing: {text!r} must be two pixel sizes > 0 with their unit, DY,DXUNIT "
                        f"(e.g. 0.5,0.5mm; units {', '.join(UNITS)}), or px to score in pixels")
    return PixelSpacing(values[0], values[1], unit, "--spacing")


def read_spacing(path: str | os.PathLike[str]) -> PixelSpacing:
    """The pixel size `path` declares (see the module docstring), or pixels when it declares none."""
    file = Path(path)
    check_regular_file(file)
    try:
        if file.suffix.lower() in TIFF_EXTENSIONS:
            return _tiff_spacing(file)
        if is_image_file(file) and file.suffix.lower() != ".npy":
            return _pillow_spacing(file)
    except (OSError, ValueError, SyntaxError, ElementTree.ParseError, tifffile.TiffFileError) as exc:
        raise UserError(f"{file}: cannot read its pixel size ({first_line(exc)})") from None
    return PixelSpacing()


def spacings_for(pairs: Sequence[Pair], given: PixelSpacing | None = None) -> tuple[dict[str, PixelSpacing], str]:
    """stem -> pixel size of every pair, all in one unit, and that unit: `given` (--spacing) for all, else
    each file's own. A mix of sized and unsized files is one UserError naming one of each."""
    if given is not None:
        return {pair.stem: given for pair in pairs}, given.unit
    # the mask's size counts where the image has none
    found = {pair.stem: (pair, s if (s := read_spacing(pair.image)).physical else read_spacing(pair.mask)) for pair in pairs}
    sized = [(pair, s) for pair, s in found.values() if s.physical]
    if not sized:
        return {stem: s for stem, (_, s) in found.items()}, PIXELS
    if unsized := [pair for pair, s in found.values() if not s.physical]:
        pair, s = sized[0]
        raise UserError(f"{pair.image}: pixel size {s.dy:g} x {s.dx:g} {s.unit} ({s.source}), but {unsized[0].image} "
                        f"has none ({len(unsized)} of {len(pairs)} images): distances would mix {s.unit} and pixels; "
                        f"give every image's size with --spacing DY,DXUNIT, or score in pixels with --spacing px")
    unit = min({s.unit for _, s in sized}, key=UNITS.__getitem__)
    if any(s.unit != unit for _, s in sized):
        log.info("pixel sizes come in %s; distances are given in %s", ", ".join(sorted({s.unit for _, s in sized})), unit)
    return {pair.stem: s.to(unit) for pair, s in sized}, unit


def _tiff_spacing(file: Path) -> PixelSpacing:
    with tifffile.TiffFile(file) as tif:
        if tif.is_ome and tif.ome_metadata and (found := _ome_spacing(tif.ome_metadata)) is not None:
            return found
        tags = tif.pages.first.tags  # a missing resolution reads 0: pixels
        per_x, per_y = (_ratio(tags.valueof(name, 0)) for name in ("XResolution", "YResolution"))
        if tif.is_imagej:
            unit = unit_name(str((tif.imagej_metadata or {}).get("unit", "")))
            return PixelSpacing() if unit in (None, PIXELS) else _per_unit(per_x, per_y, 1.0, unit, "ImageJ resolution")
        size = _TIFF_UNIT_MM.get(int(tags.valueof("ResolutionUnit", 2)))  # TIFF's default unit: inch
        return PixelSpacing() if size is None else _per_unit(per_x, per_y, size, "mm", "TIFF resolution")


def _ome_spacing(xml: str) -> PixelSpacing | None:
    """(PhysicalSizeY, PhysicalSizeX) of the first Pixels element; None when it has not both."""
    pixels = ElementTree.fromstring(xml).find(".//{*}Pixels")
    attributes = {} if pixels is None else pixels.attrib
    found = [attributes.get(f"PhysicalSize{axis}") for axis in "YX"]
    units = [unit_name(attributes.get(f"PhysicalSize{axis}Unit", "µm")) for axis in "YX"]
    if None in found or units[0] in (None, PIXELS) or units[0] != units[1]:
        return None
    sizes = [float(size) for size in found]  # type: ignore[arg-type]
    return PixelSpacing(sizes[0], sizes[1], units[0], "OME metadata") if min(sizes) > 0 else None


def _pillow_spacing(file: Path) -> PixelSpacing:
    with open_pillow(file) as image:
        dpi = image.info.get("dpi")
        if not dpi or len(dpi) != 2:
            return PixelSpacing()
        per_x, per_y = float(dpi[0]), float(dpi[1])
        if image.getexif().get(0x0112) in ROTATING:  # shown rotated a quarter turn: the axes swap
            per_x, per_y = per_y, per_x
        return _per_unit(per_x, per_y, 25.4, "mm", f"{image.format} resolution")


def _per_unit(per_x: float, per_y: float, size: float, unit: str, source: str) -> PixelSpacing:
    """Pixels per `size` `unit` as a pixel size; pixels when undefined (0) or a placeholder (module docstring)."""
    if per_x <= 0 or per_y <= 0:
        return PixelSpacing()
    spacing = PixelSpacing(size / per_y, size / per_x, unit, source)
    per_inch = [UNITS["in"] / (s * UNITS[unit]) for s in spacing.yx]
    if any(round(d) in PLACEHOLDER_DPI or d < MIN_DPI for d in per_inch):
        return PixelSpacing(source=f"{per_inch[1]:.0f} dpi: an editor's default, not a measured size")
    return spacing


def _ratio(value: object) -> float:
    """A TIFF RATIONAL tag value ((numerator, denominator) or a number) as a float; 0 when undefined."""
    if isinstance(value, tuple):
        return float(value[0]) / float(value[1]) if value[1] else 0.0
    return float(value)  # type: ignore[arg-type]
