"""What a review writes under LABELS, and which uploads it takes (review/store.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import write_gray_png
from unetkit.data.dataset import find_pairs, load_pair
from unetkit.data.masks import read_class_palette
from unetkit.review.store import LabelStore, UploadError, parse_mask_png


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_uploads_of_class_indices_gray_rgb_or_opaque_rgba() -> None:
    mask = np.array([[0, 1], [2, 0]], np.uint8)
    assert np.array_equal(parse_mask_png(_png(mask), 2, 2, 3), mask)
    rgba = np.dstack([mask, mask, mask, np.full_like(mask, 255)])
    assert np.array_equal(parse_mask_png(_png(rgba), 2, 2, 3), mask)
    with pytest.raises(UploadError, match="not class indices 0..2"):
        parse_mask_png(_png(mask * 2), 2, 2, 3)
    with pytest.raises(UploadError, match="transparent"):
        parse_mask_png(_png(np.dstack([mask, mask, mask, np.zeros_like(mask)])), 2, 2, 3)
    with pytest.raises(UploadError, match="colour channels differ"):
        parse_mask_png(_png(np.dstack([mask, mask * 0, mask])), 2, 2, 3)
    with pytest.raises(UploadError, match="JPEG"):
        buffer = io.BytesIO()
        Image.fromarray(mask).save(buffer, format="JPEG")
        parse_mask_png(buffer.getvalue(), 2, 2, 3)


def test_a_class_mask_is_saved_as_train_reads_it_with_the_class_colours(tmp_path: Path) -> None:
    image = write_gray_png(tmp_path / "in" / "a.png", np.arange(12, dtype=np.uint8).reshape(3, 4) * 20)
    classes = [{"name": "sky", "color": [0, 0, 0]}, {"name": "tree", "color": [0, 200, 0]},
               {"name": "road", "color": [90, 90, 90]}]
    store = LabelStore(tmp_path / "labels", tmp_path / "in", 3, classes)
    store.prepare()
    mask = np.array([[0, 1, 2, 2], [0, 0, 1, 1], [2, 2, 2, 0]], np.uint8)
    store.save("a", image, mask, previous=np.zeros_like(mask), seconds=2.0)
    palette = read_class_palette(tmp_path / "labels", 3)
    assert palette is not None and palette.names == ("sky", "tree", "road")
    _, decoded = load_pair(find_pairs(tmp_path / "labels")[0], 1, 3, palette=palette)
    assert np.array_equal(decoded, mask)
    assert json.loads((tmp_path / "labels" / "review.jsonl").read_text())["pixels_changed"] == 8
    assert np.array_equal(store.read("a"), mask)
