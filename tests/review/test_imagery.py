"""The editor's pictures: display copies kept for the last images, reductions and regions checked."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from unetkit.data.io import write_png
from unetkit.review.imagery import DisplayImages, RegionError, parse_reduce, parse_region


def test_regions_are_clipped_to_the_image_and_wrong_ones_refused() -> None:
    assert parse_region("500,0,512,512", 600, 700) == (500, 0, 200, 512)
    for text in ("700,0,1,1", "0,0,0,4", "0,0,5000,4", "a,b,c,d", "1,2,3"):
        with pytest.raises(RegionError):
            parse_region(text, 600, 700)
    assert parse_reduce("8") == 8
    for text in ("0", "65", "-2", "2.5"):
        with pytest.raises(RegionError):
            parse_reduce(text)


def test_gray_images_stay_one_channel_colour_ones_three_and_only_two_are_kept(tmp_path) -> None:
    rng = np.random.default_rng(0)
    paths = {}
    for key, array in (("gray", rng.integers(0, 256, (20, 30), np.uint8)),
                       ("colour", rng.integers(0, 256, (20, 30, 3), np.uint8)), ("third", np.zeros((5, 5), np.uint8))):
        paths[key] = tmp_path / f"{key}.png"
        write_png(paths[key], array)
    pictures = DisplayImages(paths, capacity=2)
    assert pictures.display("gray").shape == (20, 30)
    assert pictures.display("colour").shape == (20, 30, 3)
    reduced = np.asarray(Image.open(io.BytesIO(pictures.png("gray", reduce="4"))))
    assert reduced.shape == (5, 8)  # sides rounded up: 20 / 4, 30 / 4
    pictures.display("third")
    assert list(pictures.kept) == ["gray", "third"]  # "colour" was the least recently used
