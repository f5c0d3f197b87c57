"""The CLI end to end, and every bad input the foundation issue names: one line, exit 2, nothing half-written."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file

from tests.conftest import write_gray_png
from unetkit.cli.main import main

SMALL = ["--preset", "small", "--batch-size", "8", "--epochs", "2"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("unetkit: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.slow
def test_train_predict_evaluate(capsys: pytest.CaptureFixture[str], synthetic_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, out, _ = run_cli(capsys, "-q", "train", "--data", str(synthetic_dir), "--out", str(run), *SMALL)
    assert code == 0 and "validation IoU" in out
    model = run / "model.safetensors"

    code, _, _ = run_cli(capsys, "-q", "predict", "--model", str(model), "--input", str(synthetic_dir / "images"),
                         "--out", str(tmp_path / "pred"), "--probabilities", "--overlay")
    assert code == 0
    mask = np.asarray(Image.open(tmp_path / "pred" / "syn_00000.png"))
    assert mask.shape == (40, 40) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    assert len(list((tmp_path / "pred").glob("*_prob.tif"))) == 12
    assert np.asarray(Image.open(tmp_path / "pred" / "syn_00000_overlay.png")).shape == (40, 40, 3)
    assert json.loads((tmp_path / "pred" / "predict_args.json").read_text())["n_images"] == 12

    code, out, _ = run_cli(capsys, "-q", "evaluate", "--model", str(model), "--data", str(synthetic_dir), "--json",
                           "--csv", str(tmp_path / "eval.csv"))
    figures = json.loads(out)
    assert code == 0 and figures["n_images"] == 12
    assert {"iou", "dice", "pixel_accuracy", "tgs_map"} <= set(figures)
    assert all(0.0 <= figures[k] <= 1.0 for k in ("iou", "dice", "pixel_accuracy", "tgs_map"))
    assert len((tmp_path / "eval.csv").read_text().splitlines()) == 16  # header + 12 images + #all and the interval


def test_missing_data_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "nope", "data folder not found")
    assert not (tmp_path / "run").exists()


def test_empty_data_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "masks").mkdir()
    code, _, err = run_cli(capsys, "train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "images", "no images found")
    assert not (tmp_path / "run").exists()


def test_image_without_mask(capsys: pytest.CaptureFixture[str], synthetic_dir: Path, tmp_path: Path) -> None:
    (synthetic_dir / "masks" / "syn_00007.png").unlink()
    code, _, err = run_cli(capsys, "train", "--data", str(synthetic_dir), "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "syn_00007.png", "images without a mask")


def test_mismatched_sizes(capsys: pytest.CaptureFixture[str], synthetic_dir: Path, tmp_path: Path) -> None:
    write_gray_png(synthetic_dir / "masks" / "syn_00001.png", np.zeros((39, 40), np.uint8))
    code, _, err = run_cli(capsys, "train", "--data", str(synthetic_dir), "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "syn_00001.png", "mask is 40x39")
    assert not (tmp_path / "run").exists()


def test_truncated_image(capsys: pytest.CaptureFixture[str], synthetic_dir: Path, tmp_path: Path) -> None:
    path = synthetic_dir / "images" / "syn_00004.png"
    path.write_bytes(path.read_bytes()[:300])
    code, _, err = run_cli(capsys, "train", "--data", str(synthetic_dir), "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "syn_00004.png", "cannot read image")


def test_uninterpretable_mask_values(capsys: pytest.CaptureFixture[str], synthetic_dir: Path, tmp_path: Path) -> None:
    write_gray_png(synthetic_dir / "masks" / "syn_00009.png", np.array([[0, 7, 255] * 13 + [0]] * 40, np.uint8))
    code, _, err = run_cli(capsys, "train", "--data", str(synthetic_dir), "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "syn_00009.png", "mask values [0, 7, 255]")


def test_unknown_extension(capsys: pytest.CaptureFixture[str], synthetic_dir: Path, tmp_path: Path) -> None:
    (synthetic_dir / "images" / "notes.txt").write_text("hello")
    code, _, err = run_cli(capsys, "train", "--data", str(synthetic_dir), "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "notes.txt", "unknown image extension")


def test_model_file_that_is_not_ours(capsys: pytest.CaptureFixture[str], synthetic_dir: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": __import__("torch").zeros(3)}, str(foreign))
    code, _, err = run_cli(capsys, "predict", "--model", str(foreign), "--input", str(synthetic_dir / "images"),
                           "--out", str(tmp_path / "pred"))
    assert_one_line_error(code, err, "foreign.safetensors", "not a unetkit file")
    assert not (tmp_path / "pred").exists()


def test_pickle_renamed_safetensors(capsys: pytest.CaptureFixture[str], synthetic_dir: Path, tmp_path: Path) -> None:
    evil = tmp_path / "model.safetensors"
    evil.write_bytes(pickle.dumps({"state_dict": {}}))
    code, _, err = run_cli(capsys, "evaluate", "--model", str(evil), "--data", str(synthetic_dir))
    assert_one_line_error(code, err, "model.safetensors", "not a safetensors file")


def test_colour_image_for_a_gray_model(capsys: pytest.CaptureFixture[str], tiny_model_file: Path, tmp_path: Path) -> None:
    colour = np.zeros((20, 20, 3), np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).save(tmp_path / "colour.png")
    code, _, err = run_cli(capsys, "predict", "--model", str(tiny_model_file), "--input", str(tmp_path / "colour.png"),
                           "--out", str(tmp_path / "pred"))
    assert_one_line_error(code, err, "colour.png", "3 distinct channels but the model expects 1")


def test_bad_config_value_names_the_field(capsys: pytest.CaptureFixture[str], synthetic_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("model:\n  upsampling: nearest\n")
    code, _, err = run_cli(capsys, "train", "--data", str(synthetic_dir), "--out", str(tmp_path / "run"),
                           "--config", str(tmp_path / "c.yaml"))
    assert_one_line_error(code, err, "model.upsampling", "nearest")


def test_output_folder_that_is_a_file(capsys: pytest.CaptureFixture[str], tiny_model_file: Path,
                                      synthetic_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file")
    code, _, err = run_cli(capsys, "predict", "--model", str(tiny_model_file), "--input", str(synthetic_dir / "images"),
                           "--out", str(tmp_path / "taken"))
    assert_one_line_error(code, err, "taken", "cannot create output folder")


def test_predict_never_overwrites_its_input(capsys: pytest.CaptureFixture[str], tiny_model_file: Path,
                                            synthetic_dir: Path) -> None:
    image = synthetic_dir / "images" / "syn_00000.png"
    before = image.read_bytes()
    code, _, err = run_cli(capsys, "predict", "--model", str(tiny_model_file), "--input", str(image),
                           "--out", str(image.parent))
    assert_one_line_error(code, err, "syn_00000.png", "would overwrite an input image")
    assert image.read_bytes() == before


def test_predict_large_images_with_tiles_tta_and_rle(capsys: pytest.CaptureFixture[str], tiny_model_file: Path,
                                                     tmp_path: Path) -> None:
    write_gray_png(tmp_path / "in" / "wide.png", np.random.default_rng(0).integers(0, 255, (90, 333), dtype=np.uint8))
    np.save(tmp_path / "in" / "big.npy", np.zeros((120, 80), np.uint8))
    code, _, err = run_cli(capsys, "predict", "--model", str(tiny_model_file), "--input", str(tmp_path / "in"),
                           "--out", str(tmp_path / "out"), "--tile", "64", "--overlap", "0.5", "--blend", "constant",
                           "--tta", "d4", "--device", "cpu", "--rle", str(tmp_path / "sub.csv"))
    assert code == 0, err
    assert (tmp_path / "sub.csv").read_text().splitlines()[0] == "id,rle_mask"
    assert len((tmp_path / "sub.csv").read_text().splitlines()) == 3
    assert Image.open(tmp_path / "out" / "wide.png").size == (333, 90)
    code, _, err = run_cli(capsys, "predict", "--model", str(tiny_model_file), "--input", str(tmp_path / "in"),
                           "--out", str(tmp_path / "out2"), "--stream-above", "0.001", "--rle", "x.csv")
    assert_one_line_error(code, err, "big.npy", "too large for --rle")
    code, _, err = run_cli(capsys, "predict", "--model", str(tiny_model_file), "--input", str(tmp_path / "in"),
                           "--out", str(tmp_path / "out3"), "--overlap", "1.0")
    assert_one_line_error(code, err, "overlap")


def test_checkpoint_given_as_model_says_so(capsys: pytest.CaptureFixture[str], synthetic_dir: Path, tmp_path: Path) -> None:
    import torch

    from unetkit.config import TrainConfig
    from unetkit.data.preprocess import identity_preprocess
    from unetkit.models import UNet
    from unetkit.training.checkpoint import TrainState, save_checkpoint

    net = UNet(start_neurons=2, depth=2)
    optimizer = torch.optim.Adam(net.parameters())
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    save_checkpoint(tmp_path / "last.safetensors", TrainConfig(), net, identity_preprocess(1), optimizer, scheduler,
                    TrainState())
    code, _, err = run_cli(capsys, "evaluate", "--model", str(tmp_path / "last.safetensors"), "--data", str(synthetic_dir))
    assert_one_line_error(code, err, "last.safetensors", "is a training checkpoint")


def test_demo_refuses_a_folder_it_did_not_make(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("years of work")
    code, _, err = run_cli(capsys, "demo", "--out", str(tmp_path / "precious"))
    assert_one_line_error(code, err, "precious", "not an earlier demo")
    assert (tmp_path / "precious" / "thesis.tex").read_text() == "years of work"


def _subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_real_entry_point_exits_2_without_traceback(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "unetkit", "evaluate", "--model", str(tmp_path / "none.safetensors"),
                           "--data", str(tmp_path)], capture_output=True, text=True, env=_subprocess_env(), timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == f"unetkit: error: {tmp_path / 'none.safetensors'}: model file not found"


@pytest.mark.slow
def test_killed_prediction_is_finished_by_running_it_again(tiny_model_file: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(12):
        write_gray_png(tmp_path / "in" / f"img{i:02d}.png", rng.integers(0, 255, (200, 200), dtype=np.uint8))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "unetkit", "-q", "predict", "--model", str(tiny_model_file), "--input",
               str(tmp_path / "in"), "--out", str(out), "--batch-size", "1", "--tile", "64", "--tta", "d4",
               "--device", "cpu"]
    process = subprocess.Popen(command, env=_subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob("img*.png")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = sorted(out.glob("img*.png"))
    assert 1 <= len(written) < 12  # killed midway
    assert all(Image.open(path).size == (200, 200) for path in written)  # each one complete
    done = subprocess.run(command, env=_subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "predict_args.json").read_text())
    assert record["status"] == "complete" and record["n_skipped"] >= len(written) and record["n_images"] == 12
    assert len(list(out.glob("img*.png"))) == 12 and not list(out.glob(".*"))  # no temporary file left


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_checkpoint(synthetic_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    command = [sys.executable, "-m", "unetkit", "-q", "train", "--data", str(synthetic_dir), "--out", str(run),
               "--preset", "small", "--batch-size", "4", "--epochs", "3"]
    process = subprocess.Popen(command, env=_subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = run / "checkpoints" / "last.safetensors"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists()
    assert not list(run.rglob("*.tmp*")) or all(p.stat().st_size >= 0 for p in run.rglob("*.tmp*"))
    done = subprocess.run(command + ["--resume"], env=_subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = (run / "metrics.csv").read_text().splitlines()
    assert len(lines) == 1 + 3
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3"]
    # A finished run is extended by asking for more epochs; nothing else needs repeating.
    done = subprocess.run(command[:-2] + ["--epochs", "4", "--resume"], env=_subprocess_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 4


def test_train_help_lists_every_field_with_its_whole_help(capsys: pytest.CaptureFixture[str]) -> None:
    """Every field's help (its metadata in config.py) is shown whole, with its default as YAML writes it."""
    import dataclasses

    from unetkit.config import DataConfig

    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for field in dataclasses.fields(DataConfig):
        assert f"data.{field.name} = " in text, field.name
    assert "see `unetkit plan`); 0: always whole images)" in text  # the third line of data.patch_size's comment
    assert "prediction as pad)" in text  # the end of data.size_policy's
    assert "model.batch_norm = false (the seed has none)" in text and "data.augment_params = {} (" in text
