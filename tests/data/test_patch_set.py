"""Patch sets: mixed sizes scanned once, large TIFFs left on disk, validation images whole or in windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from unetkit.data import patch_set
from unetkit.data.dataset import load_pair, survey
from unetkit.data.io import write_png
from unetkit.data.patch_set import PatchSet, patch_set_of, validation_set
from unetkit.data.patches import ArraySource, FileSource
from unetkit.data.synthetic import synthetic_large, write_large_synthetic


def _mixed_folder(root: Path, sizes: list[tuple[int, int]], classes: int = 2) -> Path:
    for index, (h, w) in enumerate(sizes):
        image, mask = synthetic_large(index, side=max(h, w), classes=classes)
        write_png(root / "images" / f"m{index}.png", image[:h, :w])
        write_png(root / "masks" / f"m{index}.png", (mask[:h, :w] > 0).astype(np.uint8) * 255 if classes == 2
                  else mask[:h, :w])
    return root


def _opened(root: Path, num_classes: int, ignore_index: int | None = None) -> PatchSet:
    """The folder as patch training opens it: one survey, then every mask scanned."""
    return patch_set_of(survey(root, 1, num_classes, ignore_index=ignore_index, measure=False, show_progress=False), num_classes)


def test_mixed_sizes_are_scanned_into_counts_and_coverage(tmp_path: Path) -> None:
    """Four sizes (37x50 to 130x90): per-image pixel counts and coverage equal the decoded masks'."""
    sizes = [(37, 50), (64, 64), (130, 90), (101, 101)]
    data = _opened(_mixed_folder(tmp_path / "d", sizes), 1)
    assert len(data) == 4 and all(isinstance(s, ArraySource) for s in data.sources)
    assert [(s.height, s.width) for s in data.sources] == sizes
    assert data.pixels == sum(h * w for h, w in sizes)
    for i, pair in enumerate(data.pairs):
        _, mask = load_pair(pair, 1, 1)
        assert data.counts[i, 1] == int(mask.sum()) and data.counts[i].sum() == mask.size
        assert data.coverage()[i] == pytest.approx(mask.mean())
        assert len(data.locations[i][1]) == min(int(mask.sum()), 10_000)


def test_class_masks_count_every_class_and_ignore_index(tmp_path: Path) -> None:
    """Three classes: counts per value; coverage leaves the ignored value out of the foreground."""
    root = _mixed_folder(tmp_path / "d", [(80, 80), (60, 100)], classes=3)
    data = _opened(root, 3)
    assert data.classes == (1, 2)
    _, mask = load_pair(data.pairs[0], 1, 3)
    assert list(data.counts[0, :3]) == list(np.bincount(mask.ravel(), minlength=3))
    ignoring = _opened(root, 3, ignore_index=2)
    assert ignoring.coverage(2)[0] == pytest.approx(((mask > 0) & (mask != 2)).mean())


def test_large_tiffs_stay_on_disk_and_validate_in_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2100^2 TIFF (over LARGE_PIXELS) becomes a FileSource; over VAL_WHOLE_PIXELS (set to 1000^2 here) it is
    validated on VAL_WINDOWS windows of VAL_WINDOW px named STEM@y,x, whose masks equal the file's pixels."""
    root = write_large_synthetic(tmp_path / "big", 1, side=2100, block=1024)
    write_png(root / "images" / "small.png", synthetic_large(5, side=96)[0])
    write_png(root / "masks" / "small.png", synthetic_large(5, side=96)[1] * 255)
    data = _opened(root, 1)
    assert [type(s) for s in data.sources] == [FileSource, ArraySource]
    assert data.counts[0].sum() == 2100 * 2100
    monkeypatch.setattr(patch_set, "VAL_WHOLE_PIXELS", 1000**2)
    monkeypatch.setattr(patch_set, "VAL_WINDOW", 512)
    val = validation_set(data)
    assert val.ragged and len(val) == patch_set.VAL_WINDOWS + 1
    assert all(stem.startswith("large_00000@") for stem in val.stems[:-1]) and val.stems[-1] == "small"
    assert [m.shape for m in val.masks[:-1]] == [(512, 512)] * patch_set.VAL_WINDOWS
    whole = tifffile.imread(root / "masks" / "large_00000.tif")
    for stem, mask in zip(val.stems[:-1], val.masks[:-1]):
        y, x = (int(v) for v in stem.split("@")[1].split(","))
        assert np.array_equal(mask, whole[y : y + 512, x : x + 512])
    assert sum(int(m.sum()) for m in val.masks[:2]) > 0  # half the windows are centred on foreground
