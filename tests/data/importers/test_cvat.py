"""CVAT for images 1.1 XML: a polygon, a polyline with a width and a mask with a hole, painted by z_order."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.importers.helpers import counts, images, run
from unetkit.errors import UserError

# cat polygon 4 x 4 at the origin (z 1); dog polyline along y = 3, width 2: rows 2 and 3, 20 pixels (z 0, listed
# last: z_order, not file order, puts it under the cat, which covers 8 of them); cat mask (z 2): a 3 x 3 ring at
# (6, 0) around a hole, over 3 dog pixels of row 2.
XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><labels><label><name>cat</name></label><label><name>dog</name></label></labels></task></meta>
  <image id="0" name="a.png" width="10" height="8">
    <polygon label="cat" source="manual" occluded="0" points="0,0;4,0;4,4;0,4" z_order="1"/>
    <mask label="cat" source="manual" occluded="0" rle="0, 4, 1, 4" left="6" top="0" width="3" height="3" z_order="2"/>
    <polyline label="dog" source="manual" occluded="0" points="0,3;10,3" z_order="0">
      <attribute name="width">2</attribute>
    </polyline>
  </image>
</annotations>
"""


def test_polygon_polyline_mask_by_z_order(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text(XML)
    result = run("cvat", tmp_path / "a.xml", images(tmp_path / "img", "a.png"), tmp_path / "out")
    assert result.classes == ["cat", "dog"]
    assert counts(tmp_path / "out", "a") == {0: 80 - 24 - 9, 1: 16 + 8, 2: 20 - 8 - 3}


@pytest.mark.parametrize("text,expected", [
    (XML[:200], "a.xml: not valid XML"),
    (XML.replace('points="0,0;4,0;4,4;0,4"', 'points="0,0;4,0"'),
     "a.xml: nothing written; polygons with too few points: 1 (a.png <polygon label='cat'>)"),
    (XML.replace('rle="0, 4, 1, 4"', 'rle="0, 4, 1"'),
     "a.xml: nothing written; masks whose rle does not fill their box: 1 (a.png <mask label='cat'>)"),
    (XML.replace('name="a.png"', 'name="/etc/a.png"'), "a.xml: nothing written; image paths outside"),
])
def test_bad_cvat_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "a.xml").write_text(text)
    with pytest.raises(UserError) as caught:
        run("cvat", tmp_path / "a.xml", images(tmp_path / "img", "a.png"), tmp_path / "out")
    assert str(caught.value).startswith(f"{tmp_path}/{expected}")
    assert not (tmp_path / "out").exists()


def test_label_not_in_classes(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text(XML)
    with pytest.raises(UserError, match=r"labels not in --classes: 1 \('dog' in a\.png\)$"):
        run("cvat", tmp_path / "a.xml", images(tmp_path / "img", "a.png"), tmp_path / "out", classes=("cat",))
