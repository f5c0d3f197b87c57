"""Overlay colours: a model's classes.yaml colours where it names them all, else the default palette."""

from __future__ import annotations

import numpy as np

from unetkit.visualize import PALETTE, blend_overlay, class_colours

NAMED = [{"name": "background", "color": [0, 0, 0]}, {"name": "sand", "color": [20, 200, 40]},
         {"name": "rock", "color": [200, 30, 220]}]


def test_class_colours_are_classes_yaml_s_else_the_palette() -> None:
    assert class_colours(NAMED, 3).tolist() == [c["color"] for c in NAMED]
    assert class_colours([], 1).tolist() == PALETTE[:2].tolist()  # binary: background and foreground
    partly = [{"name": "a", "color": None}, {"name": "b", "color": [1, 2, 3]}, {"name": "c", "color": None}]
    assert class_colours(partly, 3).tolist() == PALETTE[:3].tolist()


def test_blend_overlay_paints_each_class_in_its_colour() -> None:
    mask = np.array([[0, 1, 2]], np.uint8)
    image = np.zeros((1, 3, 1), np.uint8)
    out = blend_overlay(image, mask, alpha=1.0, palette=class_colours(NAMED, 3))
    assert out[0].tolist() == [[0, 0, 0], [20, 200, 40], [200, 30, 220]]
