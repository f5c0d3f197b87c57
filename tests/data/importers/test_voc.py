"""Pascal VOC SegmentationClass palette PNGs: indices kept, 255 named ignore; --classes selects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.data.importers.helpers import HEIGHT, WIDTH, counts, images, run
from unetkit.data.io import write_png
from unetkit.errors import UserError


def voc(root: Path) -> Path:
    """a.png: aeroplane (1) 6 pixels, person (15) 10 pixels, 4 border pixels (255)."""
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[0, :6] = 1
    mask[2, :10] = 15
    mask[4, :4] = 255
    palette = np.zeros((256, 3), np.uint8)
    palette[1], palette[15], palette[255] = (128, 0, 0), (192, 128, 128), (224, 224, 192)
    write_png(root / "SegmentationClass" / "a.png", mask, palette)
    return root


def test_indices_and_ignore(tmp_path: Path) -> None:
    voc(tmp_path / "VOC")
    result = run("voc", tmp_path / "VOC", images(tmp_path / "JPEGImages", "a.jpg"), tmp_path / "out")
    assert (len(result.classes), result.num_classes) == (20, 21)
    assert counts(tmp_path / "out", "a") == {0: 60, 1: 6, 15: 10, 255: 4}
    entries = yaml.safe_load((tmp_path / "out" / "classes.yaml").read_text())["classes"]
    assert entries[15] == {"name": "person", "value": 15} and entries[-1] == {"name": "ignore", "value": 255, "ignore": True}


def test_classes_select_or_refuse(tmp_path: Path) -> None:
    voc(tmp_path / "VOC")
    image_dir = images(tmp_path / "JPEGImages", "a.jpg")
    with pytest.raises(UserError, match=r"nothing written; mask indices beyond the classes: 1 \(15 in a\.png\)$"):
        run("voc", tmp_path / "VOC", image_dir, tmp_path / "out", classes=("aeroplane",))
    run("voc", tmp_path / "VOC", image_dir, tmp_path / "out", classes=("aeroplane",), drop_unknown=True)
    assert counts(tmp_path / "out", "a") == {0: 70, 1: 6, 255: 4}
