"""Issue 12's cases through the command line: nothing lost, nothing silently wrong, one line each.

Every case here failed on 7a3fa01: it replaced a file, wrote something half, or printed a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli.test_cli import assert_one_line_error, run_cli
from tests.conftest import write_gray_png
from unetkit.data.synthetic import generate_synthetic


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return generate_synthetic(tmp_path / "syn", 6, size=32, seed=4)


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


@pytest.mark.parametrize("argv", [
    ["predict", "--input", "{data}/images", "--out", "{tmp}/pred", "--rle", "{model}"],
    ["evaluate", "--data", "{data}", "--csv", "{model}"],
    ["export", "--out", "{model}"],
])
def test_no_command_writes_over_the_model(capsys: pytest.CaptureFixture[str], tiny_model_file: Path, data: Path,
                                          tmp_path: Path, argv: list[str]) -> None:
    before = _bytes(tiny_model_file)
    args = [a.format(data=data, tmp=tmp_path, model=tiny_model_file) for a in argv]
    for extra in ([], ["--overwrite"]):  # not even with --overwrite: the model is an input
        code, _, err = run_cli(capsys, args[0], "--model", str(tiny_model_file), *args[1:], *extra)
        assert_one_line_error(code, err, tiny_model_file.name, "is an input of this command")
        assert _bytes(tiny_model_file) == before
    assert not (tmp_path / "pred").exists()


def test_predict_into_the_masks_folder_keeps_the_ground_truth(capsys: pytest.CaptureFixture[str],
                                                              tiny_model_file: Path, data: Path) -> None:
    truth = {p.name: _bytes(p) for p in (data / "masks").iterdir()}
    code, _, err = run_cli(capsys, "predict", "--model", str(tiny_model_file), "--input", str(data / "images"),
                           "--out", str(data / "masks"))
    assert_one_line_error(code, err, "syn_00000.png", "was not written by this command", "--overwrite")
    assert {p.name: _bytes(p) for p in (data / "masks").iterdir()} == truth  # 6 masks untouched, nothing added
    code, _, _ = run_cli(capsys, "-q", "predict", "--model", str(tiny_model_file), "--input", str(data / "images"),
                         "--out", str(data / "masks"), "--overwrite")
    assert code == 0 and (data / "masks" / "predict_args.json").is_file()


def test_a_rerun_of_the_same_job_may_replace_its_own_outputs(capsys: pytest.CaptureFixture[str],
                                                             tiny_model_file: Path, data: Path, tmp_path: Path) -> None:
    argv = ["-q", "predict", "--model", str(tiny_model_file), "--input", str(data / "images"), "--out",
            str(tmp_path / "pred"), "--rle", str(tmp_path / "sub.csv")]
    assert run_cli(capsys, *argv)[0] == 0
    (tmp_path / "pred" / "syn_00002.png").unlink()  # as if killed: the re-run finishes it
    assert run_cli(capsys, *argv)[0] == 0
    assert len((tmp_path / "sub.csv").read_text().splitlines()) == 7  # header + 6 images


def test_a_foreign_csv_or_onnx_target_needs_overwrite(capsys: pytest.CaptureFixture[str], tiny_model_file: Path,
                                                      data: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.csv"
    notes.write_text("my,own\n1,2\n")
    code, _, err = run_cli(capsys, "evaluate", "--model", str(tiny_model_file), "--data", str(data), "--csv", str(notes))
    assert_one_line_error(code, err, "notes.csv", "--overwrite")
    assert notes.read_text() == "my,own\n1,2\n"
    code, _, err = run_cli(capsys, "export", "--model", str(tiny_model_file), "--out", str(notes))
    assert_one_line_error(code, err, "notes.csv", "--overwrite")
    code, _, _ = run_cli(capsys, "-q", "evaluate", "--model", str(tiny_model_file), "--data", str(data), "--csv",
                         str(notes), "--overwrite")
    assert code == 0 and notes.read_text().startswith("stem,iou,dice")
    # an evaluate CSV is evaluate's own: the same command may write it again
    assert run_cli(capsys, "-q", "evaluate", "--model", str(tiny_model_file), "--data", str(data), "--csv",
                   str(notes))[0] == 0


def test_evaluate_writes_its_csv_into_the_current_folder(capsys: pytest.CaptureFixture[str], tiny_model_file: Path,
                                                         data: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys, "-q", "evaluate", "--model", str(tiny_model_file), "--data", str(data))[0] == 0
    assert (tmp_path / "evaluation-syn.csv").is_file()
    assert not list(tiny_model_file.parent.glob("evaluation-*.csv")) or tiny_model_file.parent == tmp_path


def test_an_unwritable_rle_target_is_found_before_any_mask(capsys: pytest.CaptureFixture[str], tiny_model_file: Path,
                                                           data: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "predict", "--model", str(tiny_model_file), "--input", str(data / "images"),
                           "--out", str(tmp_path / "pred"), "--rle", str(blocker / "sub.csv"))
    assert_one_line_error(code, err, "file", "cannot create output folder")
    assert not (tmp_path / "pred").exists()


def test_a_failed_predict_leaves_no_folder(capsys: pytest.CaptureFixture[str], tiny_model_file: Path,
                                           tmp_path: Path) -> None:
    images = tmp_path / "in"
    write_gray_png(images / "a.png", np.zeros((20, 20), np.uint8))
    import tifffile

    tifffile.imwrite(images / "b.tif", np.full((20, 20), np.nan, np.float32))
    code, _, err = run_cli(capsys, "predict", "--model", str(tiny_model_file), "--input", str(images),
                           "--out", str(tmp_path / "pred"))
    assert_one_line_error(code, err, "b.tif")
    assert not (tmp_path / "pred").exists()  # no folder holding only predict_args.json


@pytest.mark.parametrize(("argv", "fragment"), [
    (["train", "--data", "{data}", "--out", "{tmp}/run", "--seed", "-1"], "'seed': -1 must lie in"),
    (["export", "--model", "{model}", "--out", "{tmp}/m.onnx", "--opset", "1"], "'opset': 1 must lie in 11..20"),
    (["export", "--model", "{model}", "--out", "{tmp}/m.onnx", "--opset", "99999"], "'opset': 99999"),
    (["synth", "--out", "{tmp}/s", "--size", "0"], "size"),
    (["synth", "--out", "{tmp}/s", "--n", "-5"], "-5"),
    (["train", "--data", "{data}", "--out", "{tmp}/run", "--set", "loss.name=dicey"], "'loss.name': 'dicey'"),
])
def test_bad_values_are_one_line_and_write_nothing(capsys: pytest.CaptureFixture[str], tiny_model_file: Path,
                                                   data: Path, tmp_path: Path, argv: list[str], fragment: str) -> None:
    args = [a.format(data=data, tmp=tmp_path, model=tiny_model_file) for a in argv]
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "run").exists() and not (tmp_path / "m.onnx").exists() and not (tmp_path / "s").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "lots"])
def test_stream_above_must_be_a_finite_number(capsys: pytest.CaptureFixture[str], tiny_model_file: Path,
                                                data: Path, tmp_path: Path, value: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_cli(capsys, "predict", "--model", str(tiny_model_file), "--input", str(data / "images"), "--out",
                str(tmp_path / "pred"), "--stream-above", value)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "must be a number of megapixels >= 0" in err and "Traceback" not in err


def test_report_on_a_garbage_metrics_csv_is_one_line(capsys: pytest.CaptureFixture[str], tiny_model_file: Path,
                                                     tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(tiny_model_file.read_bytes())
    (run / "metrics.csv").write_text("epoch,val_loss,val_iou\n1,lots,0.5\n")
    code, _, err = run_cli(capsys, "report", str(run))
    assert_one_line_error(code, err, "metrics.csv", "not a table written by unetkit train")


def test_quiet_flag_after_the_subcommand(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "synth", "-q", "--out", str(tmp_path / "s"), "--n", "2")
    assert code == 0 and err == "" and "2 synthetic image/mask pairs written" in out


def test_non_utf8_file_names_reach_the_csvs(capsys: pytest.CaptureFixture[str], tiny_model_file: Path,
                                            tmp_path: Path) -> None:
    import os

    images = tmp_path / "in"
    images.mkdir()
    raw = os.fsencode(str(images)) + b"/caf\xe9.png"  # Latin-1 bytes: not UTF-8
    write_gray_png(Path(os.fsdecode(raw)), np.zeros((20, 20), np.uint8))
    code, _, _ = run_cli(capsys, "-q", "predict", "--model", str(tiny_model_file), "--input", str(images), "--out",
                         str(tmp_path / "pred"), "--rle", str(tmp_path / "sub.csv"))
    assert code == 0
    assert b"caf\xe9" in (tmp_path / "sub.csv").read_bytes()  # the name as the file system spells it
    assert json.loads((tmp_path / "pred" / "predict_args.json").read_text())["n_images"] == 1
