"""Pairing in any layout: folders named apart, name patterns, a pairs CSV, and the hint that lists candidates.

The layout is a public retinal-vessel set's as distributed: images, a field-of-view folder and
a labels folder with other stems (training/images/21_training.tif, training/mask/21_training_mask.gif,
training/1st_manual/21_manual1.gif).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetkit.data.layout_hints import suspicious_masks
from unetkit.data.pairing import DataSource, find_images, find_pairs
from unetkit.errors import UserError

IDS = (21, 22, 23, 24)
SIDE = 16


def vessel_layout(root: Path) -> Path:
    """root/training with images (RGB TIFF), mask/ (one field-of-view disc) and 1st_manual/ (labels)."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    disc = ((yy - 7.5) ** 2 + (xx - 7.5) ** 2 <= 7**2).astype(np.uint8)
    training = root / "training"
    for folder in ("images", "mask", "1st_manual"):
        (training / folder).mkdir(parents=True, exist_ok=True)
    for index, image_id in enumerate(IDS):
        tifffile.imwrite(training / "images" / f"{image_id}_training.tif",
                         rng.integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8), photometric="rgb")
        Image.fromarray(disc * 255).save(training / "mask" / f"{image_id}_training_mask.gif")
        labels = np.zeros((SIDE, SIDE), np.uint8)
        labels[2 + index, 1:15] = 1  # one horizontal vessel, a row apart per image
        labels[1:15, 3 + 2 * index] = 1
        Image.fromarray(labels * 255).save(training / "1st_manual" / f"{image_id}_manual1.gif")
    return training


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vessel_layout(tmp_path_factory.mktemp("drive"))


def test_folders_and_patterns_pair_the_labels(training: Path) -> None:
    source = DataSource(images_dir=str(training / "images"), masks_dir=str(training / "1st_manual"),
                        image_name="{id}_training.tif", mask_name="{id}_manual1.gif")
    pairs = find_pairs(source)
    assert [(p.stem, p.image.name, p.mask.name) for p in pairs] == [
        (f"{i}", f"{i}_training.tif", f"{i}_manual1.gif") for i in IDS]


def test_data_folder_with_masks_override(training: Path) -> None:
    """--data DIR (no images/ there) needs --images; --masks overrides one side of a DIR layout."""
    source = DataSource(data_dir=str(training), images_dir=str(training / "images"),
                        masks_dir=str(training / "1st_manual"), mask_name="{id}_manual1.gif",
                        image_name="{id}_training.tif")
    assert len(find_pairs(source)) == len(IDS)
    assert source.classes_file() is None


def test_pairs_csv_relative_to_the_file(training: Path, tmp_path: Path) -> None:
    csv = training / "pairs.csv"
    csv.write_text("image,mask\n" + "".join(f"images/{i}_training.tif,1st_manual/{i}_manual1.gif\n" for i in IDS))
    pairs = find_pairs(DataSource(pairs=str(csv)))
    assert [p.mask for p in pairs] == [training / "1st_manual" / f"{i}_manual1.gif" for i in IDS]
    assert find_images("", pairs=str(csv)) == [training / "images" / f"{i}_training.tif" for i in IDS]
    csv.unlink()


@pytest.mark.parametrize("text,expected", [
    ("image,mask\nimages/21_training.tif,1st_manual/nope.gif\nimages/x.tif,1st_manual/21_manual1.gif\n",
     "pairs.csv: 2 listed files not found ({t}/1st_manual/nope.gif, {t}/images/x.tif); paths are relative to {t}"),
    ("picture,mask\na,b\n", "pairs.csv: needs the columns image, mask (found: picture, mask)"),
    ("image,mask\n", "pairs.csv: lists no pairs"),
    ("image,mask\nimages/21_training.tif,1st_manual/21_manual1.gif\nimages/21_training.tif,1st_manual/22_manual1.gif\n",
     "pairs.csv: rows 2 and 3 both name an image '21_training.*'"),
])
def test_bad_pairs_csv_is_one_line(training: Path, text: str, expected: str) -> None:
    csv = training / "pairs.csv"
    csv.write_text(text)
    try:
        with pytest.raises(UserError) as caught:
            find_pairs(DataSource(pairs=str(csv)))
    finally:
        csv.unlink()
    assert "\n" not in str(caught.value)
    assert expected.format(t=training) in str(caught.value)


def test_a_pattern_that_pairs_nothing_gives_counts_and_two_names_a_side(training: Path) -> None:
    source = DataSource(images_dir=str(training / "images"), masks_dir=str(training / "1st_manual"),
                        image_name="{id}_training.tif", mask_name="{id}_manual.gif")
    with pytest.raises(UserError) as caught:
        find_pairs(source)
    assert str(caught.value) == (
        f"{training}/images and {training}/1st_manual: 4 of 4 images without a mask (21_training.tif, 22_training.tif, "
        "...), 4 of 4 masks without an image (21_manual1.gif, 22_manual1.gif, ...); 0 paired by images named "
        "'{id}_training.tif' and masks '{id}_manual.gif'")


def test_default_names_that_differ_get_the_patterns_suggested(training: Path) -> None:
    with pytest.raises(UserError, match=r"the names differ around an id: pass --image-name '\{id\}_training\.tif' "
                                        r"--mask-name '\{id\}_manual1\.gif'$"):
        find_pairs(DataSource(images_dir=str(training / "images"), masks_dir=str(training / "1st_manual")))


def test_files_that_do_not_fit_image_name_are_counted(training: Path) -> None:
    with pytest.raises(UserError, match=r"images: 4 of 4 files do not fit --image-name '\{id\}_test\.tif' "
                                        r"\(21_training\.tif, 22_training\.tif, \.\.\.\); nothing fits it"):
        find_images(str(training / "images"), image_name="{id}_test.tif")
    with pytest.raises(UserError, match=r"--mask-name 'manual\.gif': a file name with \{id\} once"):
        find_pairs(DataSource(images_dir=str(training / "images"), masks_dir=str(training), mask_name="manual.gif"))


def test_pairs_exclude_folder_flags() -> None:
    with pytest.raises(UserError, match=r"--pairs p\.csv: lists every image and mask itself; --images cannot take effect"):
        DataSource(pairs="p.csv", images_dir="x")


def test_missing_masks_folder_lists_every_candidate_and_never_says_rename(training: Path, tmp_path: Path) -> None:
    """DIR/images beside mask/ (field of view) and 1st_manual/ (labels): both listed, with pairs and values
    (labels: 27 of 256 pixels, 11%; the disc of radius 7: 156 of 256, 61%)."""
    root = tmp_path / "drive"
    (root).mkdir()
    for folder in ("images", "mask", "1st_manual"):
        (root / folder).symlink_to(training / folder, target_is_directory=True)
    with pytest.raises(UserError) as caught:
        find_pairs(root)
    message = str(caught.value)
    assert message == (
        f"{root}/masks: folder not found (masks are read from {root}/masks or {root}/labels); 2 folders could hold "
        f"the labels: {root}/1st_manual (4 files, pair with 0 of 4 images, 4 with --image-name '{{id}}_training.tif' "
        f"--mask-name '{{id}}_manual1.gif'; binary, 11% foreground); {root}/mask (4 files, pair with 4 of 4 images; "
        "binary, 61% foreground, the same in every file sampled); choose with --masks DIR (and --image-name/--mask-name "
        "where names differ)")
    assert "rename it" not in message


def test_region_masks_get_a_warning() -> None:
    same = np.zeros((3, 8, 8), np.uint8)
    same[:, 1:7, 1:7] = 1
    assert "all 3 masks are the same" in suspicious_masks(same.reshape(3, -1).mean(axis=1), same, "d")
    full = np.ones((2, 8, 8), np.uint8)
    full[1, 0, :4] = 0
    assert "every mask is at least 90% foreground (mean 97%)" in suspicious_masks(
        full.reshape(2, -1).mean(axis=1), None, "d")
    labels = same.copy()
    labels[1, 2] = 0
    assert suspicious_masks(labels.reshape(3, -1).mean(axis=1), labels, "d") is None
