"""LabelMe JSON: rectangle, overlapping polygon on top, a `_background_` polygon cutting a hole; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.data.importers.helpers import HEIGHT, WIDTH, counts, images, run
from unetkit.errors import UserError


def labelme(*shapes: dict[str, object], image: str = "a.png") -> str:
    return json.dumps({"version": "5.4.1", "flags": {}, "imagePath": image, "imageData": None,
                       "imageHeight": HEIGHT, "imageWidth": WIDTH, "shapes": list(shapes)})


def shape(label: str, points: list[list[float]], kind: str = "polygon") -> dict[str, object]:
    return {"label": label, "points": points, "group_id": None, "shape_type": kind, "flags": {}}


SQUARE = [[2, 2], [6, 2], [6, 6], [2, 6]]
GOOD = labelme(shape("cat", [[0, 0], [4, 4]], "rectangle"), shape("dog", SQUARE),
               shape("_background_", [[3, 3], [5, 3], [5, 5], [3, 5]]))


def test_rectangle_overlap_and_hole(tmp_path: Path) -> None:
    """cat 16 - 4 under the dog; dog 16 - 4 cut by the background square."""
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "a.json").write_text(GOOD)
    run("labelme", tmp_path / "json", images(tmp_path / "img", "a.png"), tmp_path / "out")
    assert counts(tmp_path / "out", "a") == {0: 80 - 12 - 12, 1: 12, 2: 12}


@pytest.mark.parametrize("text,expected", [
    (GOOD[:40], "a.json: not readable JSON"),
    (labelme(shape("cat", [[1, 1], [3, 3]])), "a.json: nothing written; polygons with too few points: 1 (a.json shape 0"),
    (labelme(shape("cat", SQUARE), image="../../a.png"), "a.json: nothing written; image paths outside"),
    (GOOD, "a.json: nothing written; labels not in --classes: 1 ('dog' in a.png)"),
])
def test_bad_labelme_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "a.json").write_text(text)
    with pytest.raises(UserError) as caught:
        run("labelme", tmp_path / "a.json", images(tmp_path / "img", "a.png"), tmp_path / "out", classes=("cat",))
    assert str(caught.value).startswith(f"{tmp_path}/{expected}")
    assert not (tmp_path / "out").exists()
