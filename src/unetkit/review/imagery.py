"""The pictures the editor draws: an image reduced by a factor, or one region of it, as 8-bit PNG.

A page that shows a large image zoomed out asks for a reduced copy (its longer side about the
screen's), zoomed in for the tiles in view. Decoding costs far more than cutting, so the display
copies of the last few images stay in memory (a gray one as one channel, a third of RGB's bytes)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from unetkit.data.io import read_array
from unetkit.review.predictions import encode_png
from unetkit.visualize import display_gray

MAX_REDUCE = 64  # the largest reduction factor the page may ask for
MAX_REGION = 4096  # pixels, the longest side of one region


class RegionError(ValueError):
    """A reduction or region the image cannot give (one line, HTTP 400)."""


def parse_region(text: str, height: int, width: int) -> tuple[int, int, int, int]:
    """'x,y,w,h' in image pixels -> the region, checked against the image (H, W)."""
    try:
        x, y, w, h = (int(part) for part in text.split(","))
    except ValueError:
        raise RegionError(f"region {text!r} is not x,y,w,h (four integers)") from None
    if not (0 <= x < width and 0 <= y < height and 0 < w <= MAX_REGION and 0 < h <= MAX_REGION):
        raise RegionError(f"region {text!r} lies outside the {width}x{height} image or is over {MAX_REGION} pixels a side")
    return x, y, min(w, width - x), min(h, height - y)


def parse_reduce(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_REDUCE:
        raise RegionError(f"reduce {text!r} is not an integer factor 1..{MAX_REDUCE}")
    return int(text)


class DisplayImages:
    """8-bit display copies (H, W) or (H, W, 3) of the last `capacity` images asked for, and PNGs cut from them."""

    def __init__(self, paths: dict[str, Path], capacity: int = 2) -> None:
        self.paths, self.capacity = paths, capacity
        self.kept: OrderedDict[str, np.ndarray] = OrderedDict()
        self.lock = threading.Lock()

    def display(self, key: str) -> np.ndarray:
        """The image of `key` for display: gray (H, W) when its channels are equal, else (H, W, 3) uint8."""
        with self.lock:
            if key in self.kept:
                self.kept.move_to_end(key)
                return self.kept[key]
        rgb = display_gray(read_array(self.paths[key]))
        array = rgb[:, :, 0].copy() if (rgb == rgb[:, :, :1]).all() else rgb
        with self.lock:
            self.kept[key] = array
            while len(self.kept) > self.capacity:
                self.kept.popitem(last=False)
        return array

    def png(self, key: str, reduce: str | None = None, region: str | None = None) -> bytes:
        """The whole image, reduced by `reduce` (box average, sides rounded up), or the `region` 'x,y,w,h'."""
        if reduce is not None and region is not None:
            raise RegionError("ask for either reduce or region, not both")
        array = self.display(key)
        if region is not None:
            x, y, w, h = parse_region(region, array.shape[0], array.shape[1])
            return encode_png(array[y:y + h, x:x + w])
        factor = 1 if reduce is None else parse_reduce(reduce)
        return encode_png(array if factor == 1 else np.asarray(Image.fromarray(array).reduce(factor)))
