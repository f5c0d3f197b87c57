"""A public data set as downloaded (images, a field-of-view folder, labels with other stems) trains from the CLI
with --images/--masks/--mask-name and with --pairs; evaluate and predict take the same options."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_cli import assert_one_line_error, run_cli
from tests.data.test_pairing import IDS, vessel_layout

TINY = ["--recipe", "seed", "--preset", "small", "--batch-size", "2", "--epochs", "1", "--patch-size", "0"]
NAMES = ["--image-name", "{id}_training.tif", "--mask-name", "{id}_manual1.gif"]


@pytest.mark.slow
def test_vessel_layout_trains_evaluates_and_predicts_by_patterns(capsys: pytest.CaptureFixture[str],
                                                                 tmp_path: Path) -> None:
    training = vessel_layout(tmp_path)
    folders = ["--images", str(training / "images"), "--masks", str(training / "1st_manual")]
    code, out, err = run_cli(capsys, "train", *folders, *NAMES, "--out", str(tmp_path / "run"), *TINY)
    assert code == 0, err
    assert "field-of-view" not in err
    model = str(tmp_path / "run" / "model.safetensors")
    code, out, err = run_cli(capsys, "evaluate", "--model", model, *folders, *NAMES, "--csv", str(tmp_path / "e.csv"))
    assert code == 0, err
    assert out.startswith(f"{len(IDS)} images")
    code, _, err = run_cli(capsys, "predict", "--model", model, "--images", str(training / "images"),
                           "--image-name", "{id}_training.tif", "--out", str(tmp_path / "pred"))
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "pred").glob("*.png")) == [f"{i}_training.png" for i in IDS]


@pytest.mark.slow
def test_vessel_layout_trains_from_a_pairs_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    training = vessel_layout(tmp_path)
    (training / "pairs.csv").write_text(
        "image,mask\n" + "".join(f"images/{i}_training.tif,1st_manual/{i}_manual1.gif\n" for i in IDS))
    code, _, err = run_cli(capsys, "train", "--pairs", str(training / "pairs.csv"), "--out", str(tmp_path / "run"),
                           *TINY)
    assert code == 0, err
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_field_of_view_masks_get_a_warning_before_training(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """The masks are checked as the run loads them, before anything is written or trained."""
    from unetkit.config import DataConfig, ModelConfig, TrainConfig
    from unetkit.training.runner import _load, _survey

    training = vessel_layout(tmp_path)
    config = TrainConfig(data=DataConfig(data_dir=str(training), masks_dir=str(training / "mask"),
                                         image_name="{id}_training.tif", mask_name="{id}_training_mask.gif"),
                         model=ModelConfig(in_channels=3))
    with caplog.at_level("WARNING", logger="unetkit"):
        _load(config, _survey(config, whole=True, measure=False), patches=False)
    assert [r.getMessage() for r in caplog.records] == [
        f"warning: {training}: all 4 masks are the same (to 99% of pixels); a field-of-view or region mask instead "
        "of the labels? check the mask folder (--masks)"]


def test_the_old_folder_hint_is_replaced_by_the_candidates(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    training = vessel_layout(tmp_path)
    code, _, err = run_cli(capsys, "-q", "train", "--data", str(training), "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "2 folders could hold the labels", f"{training}/1st_manual (4 files",
                          f"{training}/mask (4 files", "choose with --masks DIR")
    assert "rename it" not in err
    assert not (tmp_path / "run").exists()


def test_pairs_with_folder_flags_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "train", "--pairs", "p.csv", "--images", "x", "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "--pairs p.csv: lists every image and mask itself")
