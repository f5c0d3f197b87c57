"""A review session reads the given masks as `train` reads them: through the classes.yaml beside them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from tests.review.conftest import classes_model
from unetkit.config import ReviewConfig
from unetkit.data.io import write_png
from unetkit.data.synthetic import synthetic_example
from unetkit.review.session import ReviewSession

SIZE = 32
CLASSES = [{"name": "background", "color": [0, 0, 0]}, {"name": "sand", "color": [20, 200, 40]},
           {"name": "rock", "color": [200, 30, 220]}]


def test_colour_masks_given_with_classes_yaml_become_class_indices(tmp_path: Path) -> None:
    data = tmp_path / "data"
    indices = np.zeros((SIZE, SIZE), np.uint8)
    indices[:, :16] = 1  # 512 pixels of sand
    indices[:8, 24:] = 2  # 64 pixels of rock
    colours = np.array([c["color"] for c in CLASSES], np.uint8)
    for index in range(2):
        image, _ = synthetic_example(index, size=SIZE, seed=3)
        write_png(data / "images" / f"img_{index}.png", image)
        write_png(data / "masks" / f"img_{index}.png", colours[indices])  # RGB, as CamVid-style labels are
    (data / "classes.yaml").write_text(yaml.safe_dump({"classes": CLASSES}), encoding="utf-8")
    session = ReviewSession(ReviewConfig(model_path=str(classes_model(tmp_path / "model.safetensors", data, 3)),
                                         images_dir=str(data / "images"), masks_dir=str(data / "masks"),
                                         out_dir=str(tmp_path / "labels"), device="cpu"))
    given = session.current_mask("img_1")
    assert given is not None and np.bincount(given.ravel(), minlength=3).tolist() == [SIZE * SIZE - 576, 512, 64]
    assert all(item["iou"] is not None for item in session.items())  # every image compared with its mask
