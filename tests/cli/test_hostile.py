"""The hostile pass's cases: each is refused with exit code 2 (CLI) or a `UserError` (API), in one
line naming the file, field or argument, and no byte of the user's files changes (nor is a file
added: a refused command writes nothing).

Each case builds what it needs under its own folder and returns the call and the message it must
give; the test hashes every file before and after.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import unetkit
from tests.conftest import write_gray_png
from unetkit.cli.main import main
from unetkit.config import LossConfig, PredictConfig, TrainConfig
from unetkit.data.preprocess import identity_preprocess
from unetkit.data.synthetic import generate_synthetic
from unetkit.errors import UserError
from unetkit.export.model_file import load_model, save_model
from unetkit.inference.predictor import Predictor
from unetkit.models import UNet

MAX_QUOTE = 400  # a refusal quotes at most ~200 characters of a value; the whole line stays short

Call = Callable[[], Any] | list[str]  # an API call, or the CLI's argv


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    data = generate_synthetic(root / "tiny", 8, size=32, seed=3)
    model = root / "model.safetensors"
    save_model(model, UNet(start_neurons=2, depth=2), identity_preprocess(1), threshold=0.5)
    return {"data": data, "model": model, "root": root}


def _laughs(levels: int = 9) -> str:
    """YAML whose last alias stands for 9**levels values: a few hundred bytes of text."""
    lines = ["l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _billion_list() -> list[Any]:
    value: list[Any] = [1.0] * 9
    for _ in range(9):
        value = [value] * 9
    return value


def _copy_data(shared: dict[str, Path], tmp: Path) -> Path:
    return Path(shutil.copytree(shared["data"], tmp / "D"))


def _train(shared: dict[str, Path], tmp: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(shared["data"]), "--out", str(tmp / "R"), "--epochs", "1", "-q", *extra]


def _predict_into(shared: dict[str, Path], tmp: Path, record: str, *extra: str) -> list[str]:
    out = tmp / "O"
    out.mkdir()
    (out / "predict_args.json").write_text(record)
    (out / "syn_00000.png").write_bytes(b"the user's own file")
    return ["predict", "--model", str(shared["model"]), "--input", str(shared["data"] / "images"), "--out", str(out),
            "--device", "cpu", *extra]


def _yaml(tmp: Path, text: str, *argv: str) -> list[str]:
    (tmp / "c.yaml").write_text(text)
    return [*argv, "--config", str(tmp / "c.yaml")]


def _rle_of_png(tmp: Path) -> Call:
    png = write_gray_png(tmp / "a.png", np.arange(64, dtype=np.uint8).reshape(8, 8))
    return lambda: unetkit.read_rle_csv(png)


def _predictor_nan(shared: dict[str, Path]) -> Call:
    return lambda: Predictor(load_model(shared["model"]), device="cpu").probabilities(np.full((1, 16, 16, 1), np.nan))


CASES: dict[str, Callable[[dict[str, Path], Path], tuple[Call, str]]] = {
    # --- data lost ---------------------------------------------------------------------------------
    "synth-over-user-image": lambda s, t: (
        (write_gray_png(t / "S" / "images" / "syn_00000.png", np.zeros((4, 4), np.uint8)),
         ["synth", "--out", str(t / "S"), "--n", "2", "--size", "32"])[1], r"S/images: is not empty \(holds syn_00000"),
    "synth-over-user-mask": lambda s, t: (
        ((t / "S" / "masks").mkdir(parents=True), (t / "S" / "masks" / "mine.txt").write_text("mine"),
         ["synth", "--out", str(t / "S"), "--n", "2", "--size", "32"])[2], r"S/masks: is not empty"),
    "synth-into-a-file": lambda s, t: (
        ((t / "S").write_text("mine"), ["synth", "--out", str(t / "S"), "--n", "2", "--size", "32"])[1],
        r"S: exists and is not a folder"),
    "predict-record-is-user-text": lambda s, t: (
        _predict_into(s, t, "mine\n"), r"O/predict_args\.json: exists and is not a record of a unetkit prediction"),
    "predict-record-is-user-json": lambda s, t: (
        _predict_into(s, t, '{"note": "mine"}'), r"O/predict_args\.json: exists and is not a record"),
    "predict-record-hash-without-tag": lambda s, t: (
        _predict_into(s, t, json.dumps({"model_sha256": "0" * 64, "note": "mine"})), r"O/predict_args\.json"),
    "predict-record-other-format": lambda s, t: (
        _predict_into(s, t, json.dumps({"format": "mine", "model_sha256": "0" * 64, "model_path": "m",
                                        "input_path": "i", "out_dir": "o", "status": "complete"})),
        r"O/predict_args\.json"),
    "predict-record-user-json-overwrite": lambda s, t: (
        _predict_into(s, t, '{"note": "mine"}', "--overwrite"), r"O/predict_args\.json"),
    # --- silent-wrong: flags, --set and YAML ------------------------------------------------------
    "set-data-dir-contradicts-data": lambda s, t: (
        _train(s, t, "--set", "data.data_dir=other"), r"--set data\.data_dir 'other' contradicts --data"),
    "set-out-dir-contradicts-out": lambda s, t: (
        _train(s, t, "--set", "out_dir=Other"), r"--set out_dir 'Other' contradicts --out"),
    "api-data-dir-contradicts-data": lambda s, t: (
        lambda: unetkit.train(s["data"], t / "R", **{"data.data_dir": "other"}),
        r"data\.data_dir 'other' contradicts data"),
    "min-lr-inf": lambda s, t: (
        _train(s, t, "--set", "schedule.name=cosine", "--set", "schedule.min_lr=inf"),
        r"'schedule\.min_lr': inf is not a finite number"),
    "lr-inf": lambda s, t: (_train(s, t, "--lr", "inf"), r"'optim\.lr': inf is not a finite number"),
    "class-weights-nan": lambda s, t: (
        _train(s, t, "--set", "loss.class_weights=[1, .nan]"), r"'loss\.class_weights\[1\]': nan is not a finite"),
    "tversky-alpha-nan": lambda s, t: (
        _train(s, t, "--set", "loss.tversky_alpha=nan"), r"'loss\.tversky_alpha': nan is not a finite number"),
    "weight-decay-inf": lambda s, t: (
        _train(s, t, "--set", "optim.weight_decay=.inf"), r"'optim\.weight_decay': inf is not a finite number"),
    "time-budget-inf": lambda s, t: (_train(s, t, "--time-budget", "inf"), r"'time_budget_min': inf is not a finite"),
    "val-fraction-nan": lambda s, t: (_train(s, t, "--val-fraction", "nan"), r"'data\.val_fraction': nan is not a"),
    "augment-param-nan": lambda s, t: (
        _train(s, t, "--set", "data.augment_params={p_vflip: .nan}"),
        r"'data\.augment_params\.p_vflip': nan must be a finite number"),
    "yaml-lr-inf": lambda s, t: (
        _yaml(t, "optim: {lr: .inf}\n", *_train(s, t)), r"'optim\.lr': inf is not a finite number"),
    "yaml-epochs-float": lambda s, t: (_yaml(t, "epochs: 2.5\n", *_train(s, t)[:-3]), r"'epochs': 2\.5 is not an integer"),
    "plan-patch-size-huge": lambda s, t: (
        ["plan", "--data", str(s["data"]), "--set", "patch_size=1000000000"],
        r"plan field 'patch_size': 1000000000 must lie in 1\.\.8192"),
    "plan-batch-size-inf": lambda s, t: (
        ["plan", "--data", str(s["data"]), "--set", "batch_size=.inf"], r"plan field 'batch_size': inf is not"),
    "yaml-duplicate-key": lambda s, t: (
        _yaml(t, "epochs: 2\nloss: {name: bce}\nepochs: 3\n", *_train(s, t)[:-3]),
        r"c\.yaml: not valid YAML \(key 'epochs' is given twice, line 3\)"),
    # --- silent-wrong: the API's integer and float fields ------------------------------------------
    "api-epochs-inf": lambda s, t: (lambda: TrainConfig(epochs=math.inf), r"'epochs': inf is not an integer"),
    "api-epochs-2.5": lambda s, t: (lambda: TrainConfig(epochs=2.5), r"'epochs': 2\.5 is not an integer"),
    "api-epochs-string": lambda s, t: (lambda: TrainConfig(epochs="2"), r"'epochs': '2' is not an integer"),
    "api-epochs-bool": lambda s, t: (lambda: TrainConfig(epochs=True), r"'epochs': True is not an integer"),
    "api-train-keyword-epochs-2.5": lambda s, t: (
        lambda: unetkit.train(s["data"], t / "R", epochs=2.5), r"'epochs': 2\.5 is not an integer"),
    "api-seed-huge-int": lambda s, t: (lambda: TrainConfig(seed=10**5000), r"'seed': <int of 16610 bits> is too large"),
    "yaml-int-of-5001-digits": lambda s, t: (
        _yaml(t, "seed: 1" + "0" * 5000 + "\n", *_train(s, t)[:-3]), r"c\.yaml: not valid YAML \(Exceeds the limit"),
    "api-section-as-dict": lambda s, t: (
        lambda: TrainConfig(model={"depth": 2}), r"'model': \{'depth': 2\} is not a ModelConfig"),
    "api-predict-tile-inf": lambda s, t: (
        lambda: PredictConfig(model_path="m", input_path="i", out_dir="o", tile=math.inf),
        r"'tile': inf is not an integer"),
    "api-predict-batch-inf": lambda s, t: (
        lambda: PredictConfig(model_path="m", input_path="i", out_dir="o", batch_size=math.inf),
        r"'batch_size': inf is not an integer"),
    "api-predict-keyword-tile-inf": lambda s, t: (
        lambda: unetkit.predict(s["model"], s["data"] / "images", t / "O", tile=math.inf), r"'tile': inf is not"),
    "api-foreign-model-option": lambda s, t: (
        lambda: unetkit.train_config(s["data"], out=t / "R", model={"encoder": "resnet18"}),
        r"'model\.encoder': architecture 'seed_unet' does not take it"),
    "api-probabilities-nan": lambda s, t: (
        lambda: unetkit.load_model(s["model"]).probabilities(np.full((16, 16), np.nan, np.float32)),
        r"^image: 256 of 256 pixels are NaN or infinite"),
    "api-predictor-probabilities-nan": lambda s, t: (_predictor_nan(s), r"^images: 256 of 256 pixels are NaN"),
    "api-channels-first": lambda s, t: (
        lambda: unetkit.load_model(s["model"]).predict(np.zeros((2, 1, 64, 64), np.float32)),
        r"looks channels-first"),
    # --- hangs and memory --------------------------------------------------------------------------
    "yaml-laughs-class-weights": lambda s, t: (
        _yaml(t, _laughs() + "loss: {class_weights: *l8}\n", *_train(s, t)[:-3]),
        r"c\.yaml: holds more than 5000 values once its aliases"),
    "yaml-laughs-augment-params": lambda s, t: (
        _yaml(t, _laughs() + "data: {augment_params: {p_hflip: *l8}}\n", *_train(s, t)[:-3]),
        r"c\.yaml: holds more than 5000 values"),
    "set-laughs": lambda s, t: (
        _train(s, t, "--set", "data.augment_params={" + _laughs(7).replace("\n", ", ").rstrip(", ") + "}"),
        r"--set data\.augment_params: holds more than 5000 values"),
    "api-laughs-class-weights": lambda s, t: (
        lambda: LossConfig(class_weights=_billion_list()), r"'loss\.class_weights\[0\]': \[\[\[.{0,260} is not a"),
    "synth-size-60000": lambda s, t: (
        ["synth", "--out", str(t / "S"), "--n", "1", "--size", "60000"], r"--size 60000: .* at most \d+ fits$"),
    "resize-to-30000": lambda s, t: (
        _train(s, t, "--size-policy", "resize", "--set", "data.resize_to=30000"),
        r"data\.resize_to 30000: the 8 images resized .* at most \d+ fits$"),
    "pad-to-200000": lambda s, t: (
        _train(s, t, "--size-policy", "pad_crop", "--set", "data.pad_to=200000"),
        r"data\.pad_to 200000: one image .* at most \d+ fits$"),
    # --- tracebacks and misleading messages --------------------------------------------------------
    "api-train-no-out": lambda s, t: (lambda: unetkit.train(str(t / "R")), r"^no output folder given"),
    "api-train-int": lambda s, t: (lambda: unetkit.train(42), r"^train: data must be a folder"),
    "api-predict-dict": lambda s, t: (
        lambda: unetkit.predict({"model": "m"}), r"^predict: the first argument must be a PredictConfig or a path"),
    "rle-csv-is-png": lambda s, t: (_rle_of_png(t), r"a\.png: not a run-length CSV"),
    "train-out-inside-data": lambda s, t: (
        ["train", "--data", str(_copy_data(s, t)), "--out", str(t / "D" / "images"), "--epochs", "1", "-q"],
        r"D/images: the run folder is .*D/images \(--data\), where images or masks are read"),
    "train-out-inside-masks-folder": lambda s, t: (
        ["train", "--images", str(_copy_data(s, t) / "images"), "--masks", str(t / "D" / "masks"), "--out",
         str(t / "D" / "masks" / "run"), "--epochs", "1", "-q"],
        r"D/masks/run: the run folder is inside .*D/masks \(--masks\), where images or masks are read"),
    "train-out-is-data": lambda s, t: (
        ["train", "--data", str(_copy_data(s, t)), "--out", str(t / "D"), "--epochs", "1", "-q"],
        r"D: the run folder is .*D \(--data\), where images or masks are read"),
}


def _tree(*roots: Path) -> dict[str, str]:
    """Every file under `roots` and the SHA-256 of its bytes."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for root in roots if root.exists()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", CASES)
def test_hostile_case_is_one_line_and_loses_nothing(name: str, shared: dict[str, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "case"
    work.mkdir()
    call, pattern = CASES[name](shared, work)
    before = _tree(work, shared["root"])
    if isinstance(call, list):
        code = main(call)
        message = capsys.readouterr().err.strip()
        assert code == 2, message
        assert message.startswith("unetkit: error: ")
        message = message.removeprefix("unetkit: error: ")
    else:
        with pytest.raises(UserError) as caught:
            call()
        message = str(caught.value)
    assert "\n" not in message and len(message) <= MAX_QUOTE, message[:1000]
    assert re.search(pattern, message), message
    assert _tree(work, shared["root"]) == before  # no byte changed, no file added

