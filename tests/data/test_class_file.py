"""classes.yaml maps stored values as it maps colours, in a full and a short form, with values to ignore."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_gray_png
from unetkit.data.dataset import load_labelled
from unetkit.data.masks import read_class_palette
from unetkit.errors import UserError

SIDE = 16
TRIMAP_YAML = "background: 2\npet: 1\nignore: 3\n"  # the Oxford pets' trimap: 1 = pet, 2 = background, 3 = border


def trimap_set(root: Path, n: int = 6) -> Path:
    """n gray images with a square pet (value 1) of side 4 + i inside a one-pixel border (3) on background (2)."""
    for i in range(n):
        mask = np.full((SIDE, SIDE), 2, np.uint8)
        mask[3:5 + i + 2, 3:5 + i + 2] = 3  # border ring around ...
        mask[4:4 + i + 2, 4:4 + i + 2] = 1  # ... the pet, (i + 2) x (i + 2)
        image = np.where(mask == 1, 200, 40).astype(np.uint8)
        write_gray_png(root / "images" / f"pet{i}.png", image)
        write_gray_png(root / "masks" / f"pet{i}.png", mask)
    (root / "classes.yaml").write_text(TRIMAP_YAML)
    return root


def test_three_line_trimap_yaml_maps_values_and_ignores_the_border(tmp_path: Path) -> None:
    root = trimap_set(tmp_path / "pets", n=2)
    palette = read_class_palette(root, 1)
    assert (palette.names, palette.values, palette.ignored, palette.ignore_to) == (("background", "pet"), (2, 1), (3,), 255)
    data = load_labelled(root, 1, 1, ignore_index=255, show_progress=False)
    # image 0: pet 2 x 2 = 4, border 4 x 4 - 4 = 12; image 1: pet 9, border 25 - 9 = 16
    assert [int((m == 1).sum()) for m in data.masks] == [4, 9]
    assert [int((m == 255).sum()) for m in data.masks] == [12, 16]
    assert [int((m == 0).sum()) for m in data.masks] == [SIDE * SIDE - 16, SIDE * SIDE - 25]


def test_full_form_with_ignore_entry(tmp_path: Path) -> None:
    root = trimap_set(tmp_path / "pets", n=1)
    (root / "classes.yaml").write_text("classes:\n  - {name: background, value: 2}\n  - {name: pet, value: 1}\n"
                                       "  - {name: border, value: 3, ignore: true}\n")
    data = load_labelled(root, 1, 2, ignore_index=7, show_progress=False)
    assert sorted(np.unique(data.masks).tolist()) == [0, 1, 7]


@pytest.mark.parametrize("text,expected", [
    ("background: 2\npet: 1\n", r"pet\d\.png: mask values 3 are not named in classes\.yaml"),
    ("classes:\n  - {name: border, ignore: true}\n", "an ignored entry needs the value or color it ignores"),
    ("background: [1, 2]\n", "every color must be"),
    ("- a\n", "expected 'classes:'"),
])
def test_bad_class_files_are_one_line(tmp_path: Path, text: str, expected: str) -> None:
    root = trimap_set(tmp_path / "pets", n=1)
    (root / "classes.yaml").write_text(text)
    with pytest.raises(UserError, match=expected):
        load_labelled(root, 1, 1, ignore_index=255, show_progress=False)


@pytest.mark.slow
def test_a_trimap_set_trains_with_the_border_ignored(tmp_path: Path) -> None:
    from unetkit.api import train
    from unetkit.training.recipes import resolve_train_config

    root = trimap_set(tmp_path / "pets")
    config = resolve_train_config({"out_dir": str(tmp_path / "run"), "data": {"data_dir": str(root), "patch_size": 0},
                                   "recipe": "seed", "preset": "small", "epochs": 1, "batch_size": 2})
    assert (config.data.ignore_index, config.model.num_classes) == (255, 1)
    result = train(config)
    assert result.model_path.is_file()
