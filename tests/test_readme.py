"""The README's promises: it fits a screen, and its quick start runs as written.

The quick start is the bash block after the `<!-- quickstart -->` marker. The test runs its lines
through the CLI's entry point in a folder holding tiny synthetic sets under the names the README
uses (`data/`, `new_images/`, `test/`); the only change is a tiny budget appended to `train`.
"""

from __future__ import annotations

import csv
import shlex
import shutil
from pathlib import Path

import pytest

from unetkit.cli.main import main

README = Path(__file__).resolve().parents[1] / "README.md"
MAX_README_LINES = 200
QUICKSTART_MARKER = "<!-- quickstart -->"
TINY_TRAINING = ["--epochs", "1", "--preset", "small"]  # appended to the README's `train` line
N_TRAIN, N_NEW, N_TEST, SIDE = 12, 5, 4, 32


def quickstart_commands(text: str) -> list[list[str]]:
    """The argument lists (without `unetkit`) of the code block that follows the quick-start marker."""
    after = text.split(QUICKSTART_MARKER, 1)[1].lstrip()
    assert after.startswith("```"), "the quick-start marker must sit right above a code block"
    block = after.split("\n", 1)[1].split("```", 1)[0]
    lines = [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [shlex.split(line)[1:] for line in lines if line.startswith("unetkit ")]


def test_readme_fits_a_screen() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")  # what `wc -l` counts
    assert lines <= MAX_README_LINES


def test_quickstart_is_train_predict_evaluate() -> None:
    commands = quickstart_commands(README.read_text(encoding="utf-8"))
    assert [argv[0] for argv in commands] == ["train", "predict", "evaluate"]


def _option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


@pytest.mark.slow  # a real (one-epoch) training, then predict and evaluate
def test_quickstart_runs_as_written(tmp_path: Path) -> None:
    train, predict, evaluate = quickstart_commands(README.read_text(encoding="utf-8"))
    # The folders the README names, filled with tiny synthetic sets (the tests run in tmp_path).
    assert main(["-q", "synth", "--out", _option(train, "--data"), "--n", str(N_TRAIN), "--size", str(SIDE)]) == 0
    assert main(["-q", "synth", "--out", "unlabelled", "--n", str(N_NEW), "--size", str(SIDE), "--seed", "1"]) == 0
    shutil.move("unlabelled/images", _option(predict, "--input"))
    assert main(["-q", "synth", "--out", _option(evaluate, "--data"), "--n", str(N_TEST), "--size", str(SIDE),
                 "--seed", "2"]) == 0

    assert main([*train, *TINY_TRAINING]) == 0
    model = Path(_option(predict, "--model"))
    assert model == Path(_option(train, "--out")) / "model.safetensors"
    assert model.is_file()

    assert main(predict) == 0
    masks = sorted(path.name for path in Path(_option(predict, "--out")).glob("*.png"))
    images = sorted(path.name for path in Path(_option(predict, "--input")).iterdir())
    assert len(masks) == N_NEW
    assert masks == images  # one mask per image, under the image's name

    assert main(evaluate) == 0
    table = Path(f"evaluation-{Path(_option(evaluate, '--data')).name}.csv")  # evaluate's default CSV
    with table.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if not row["stem"].startswith("#")]  # then the summary rows
    assert len(rows) == N_TEST
