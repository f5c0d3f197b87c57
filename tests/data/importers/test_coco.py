"""COCO instances JSON: polygons (multi-part, overlapping in file order) and RLE with a hole, exact pixel counts;
bad input is one line, exit 2, nothing written; the folder written is one `train` reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli.test_cli import assert_one_line_error, run_cli
from tests.data.importers.helpers import HEIGHT, WIDTH, counts, images, run
from unetkit.data.dataset import load_labelled
from unetkit.errors import UserError


def rect(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def coco(annotations: list[dict[str, object]], file_names: tuple[str, ...] = ("a.png", "b.png")) -> dict[str, object]:
    return {"images": [{"id": i + 1, "file_name": n, "width": WIDTH, "height": HEIGHT} for i, n in enumerate(file_names)],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
            "annotations": [{"id": i + 1, "iscrowd": 0, **a} for i, a in enumerate(annotations)]}


# a.png: cat 4 x 4 at (1, 1); dog 5 x 3 at (3, 3) on top (overlap 2 x 2); cat in two parts of 2 x 2.
# b.png: a dog ring of 8 pixels around a one-pixel hole, RLE column-major as COCO stores it.
RING = {"size": [HEIGHT, WIDTH], "counts": [17, 3, 5, 1, 1, 1, 5, 3, 44]}
GOOD = [{"image_id": 1, "category_id": 1, "segmentation": [rect(1, 1, 5, 5)]},
        {"image_id": 1, "category_id": 2, "segmentation": [rect(3, 3, 8, 6)]},
        {"image_id": 1, "category_id": 1, "segmentation": [rect(0, 6, 2, 8), rect(8, 0, 10, 2)]},
        {"image_id": 2, "category_id": 2, "segmentation": RING}]


def test_polygons_overlaps_parts_and_rle_holes(tmp_path: Path) -> None:
    (tmp_path / "coco.json").write_text(json.dumps(coco(GOOD)))
    result = run("coco", tmp_path / "coco.json", images(tmp_path / "img", "a.png", "b.png"), tmp_path / "out")
    assert (result.classes, result.num_classes, result.n_images) == (["cat", "dog"], 3, 2)
    assert counts(tmp_path / "out", "a") == {0: 80 - 12 - 8 - 15, 1: 16 - 4 + 8, 2: 15}
    assert counts(tmp_path / "out", "b") == {0: 72, 2: 8}
    data = load_labelled(tmp_path / "out", 1, 3, show_progress=False)
    assert data.masks[1, 2, 3] == 0 and data.masks[1, 1, 3] == 2  # the hole, and the ring above it
    assert (tmp_path / "out" / "images" / "a.png").stat().st_ino == (tmp_path / "img" / "a.png").stat().st_ino


def test_classes_select_and_order(tmp_path: Path) -> None:
    (tmp_path / "coco.json").write_text(json.dumps(coco(GOOD)))
    run("coco", tmp_path / "coco.json", images(tmp_path / "img", "a.png", "b.png"), tmp_path / "out",
        classes=("dog",), drop_unknown=True)
    assert counts(tmp_path / "out", "a") == {0: 65, 1: 15}


@pytest.mark.parametrize("content,options,expected", [
    ('{"images": [{"id": 1, "file_', {}, "coco.json: not readable JSON"),
    (coco([{"image_id": 1, "category_id": 1, "segmentation": [[1, 1, 5, 5]]}]), {},
     "coco.json: nothing written; polygons with fewer than 3 points: 1 (a.png annotation 1)"),
    (coco(GOOD), {"classes": ("cat",)}, "coco.json: nothing written; labels not in --classes: 2 ('dog' in a.png, "
                                         "'dog' in b.png)"),
    (coco([], ("../a.png",)), {}, "coco.json: nothing written; image paths outside {img}: 1 (../a.png)"),
    (coco([], ("a.png", "c.png")), {}, "coco.json: nothing written; images not found in {img}: 1 (c.png)"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, content: object, options: dict[str, object],
                                                  expected: str) -> None:
    path = tmp_path / "coco.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    image_dir = images(tmp_path / "img", "a.png", "b.png")
    images(tmp_path, "a.png")  # the file ../a.png names exists, outside the images folder
    with pytest.raises(UserError) as caught:
        run("coco", path, image_dir, tmp_path / "out", **options)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"{tmp_path}/{expected.format(img=image_dir)}")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_import_then_refusal(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "coco.json").write_text(json.dumps(coco(GOOD)))
    image_dir = images(tmp_path / "img", "a.png", "b.png")
    code, out, err = run_cli(capsys, "import", "--format", "coco", "--annotations", str(tmp_path / "coco.json"),
                             "--images", str(image_dir), "--out", str(tmp_path / "out"), "--copy")
    assert code == 0, err
    assert out.strip() == f"{tmp_path}/out: 2 images, 2 classes (cat, dog); train with --data {tmp_path}/out --num-classes 3"
    assert np.array_equal(np.unique([p.name for p in (tmp_path / "out").iterdir()]), ["classes.yaml", "images", "masks"])
    code, _, err = run_cli(capsys, "import", "--format", "coco", "--annotations", str(tmp_path / "coco.json"),
                           "--images", str(image_dir), "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, "out: exists and is not empty")


def test_api_door_takes_plain_arguments(tmp_path: Path) -> None:
    from unetkit.api import import_annotations

    (tmp_path / "coco.json").write_text(json.dumps(coco(GOOD)))
    result = import_annotations("coco", tmp_path / "coco.json", images(tmp_path / "img", "a.png", "b.png"),
                                tmp_path / "out", classes=("dog", "cat"))
    assert result.classes == ["dog", "cat"]
    assert counts(tmp_path / "out", "a") == {0: 45, 1: 15, 2: 20}
    with pytest.raises(UserError, match="import: unknown option colour"):
        import_annotations("coco", tmp_path / "coco.json", tmp_path / "img", tmp_path / "out2", colour="red")


def test_panoptic_segments_from_the_png_folder(tmp_path: Path) -> None:
    """Segment ids R + 256 G + 256^2 B: cat id 300 (R 44, G 1) on 12 pixels, dog id 7 on 5, unlabelled 0."""
    ids = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    ids[0:3, 0:4] = (44, 1, 0)
    ids[7, 5:10] = (7, 0, 0)
    (tmp_path / "panoptic").mkdir()
    Image.fromarray(ids).save(tmp_path / "panoptic" / "a.png")
    data = coco([], ("a.png",))
    data["annotations"] = [{"image_id": 1, "file_name": "a.png",
                            "segments_info": [{"id": 300, "category_id": 1}, {"id": 7, "category_id": 2}]}]
    (tmp_path / "panoptic.json").write_text(json.dumps(data))
    run("coco", tmp_path / "panoptic.json", images(tmp_path / "img", "a.png"), tmp_path / "out")
    assert counts(tmp_path / "out", "a") == {0: 63, 1: 12, 2: 5}
