"""torchrun on CPU (gloo, 2 processes): training equals one process at the same global batch,
resume and the time budget are honoured by both ranks together, prediction shards the folder.

These start real `torchrun --standalone --nproc-per-node 2 -m unetkit ...` jobs, the command
users run, so the rendezvous, the process group and the exit codes are all exercised.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unetkit.data.io import read_array
from unetkit.data.synthetic import generate_synthetic
from unetkit.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow
# The tests that read the module's trained pair (ddp_and_single) share one xdist worker, so it is trained once;
# the others start their own jobs and are dealt to whichever worker is free, so no one worker holds them all.
SHARES_THE_TRAINED_PAIR = pytest.mark.xdist_group("distributed")

TORCHRUN = Path(sys.executable).with_name("torchrun")
TINY = ["--recipe", "seed", "--epochs", "2", "--batch-size", "8", "--augment", "none", "--device", "cpu",
        "--set", "model.start_neurons=4", "--set", "model.depth=2"]
# Equal to one process to 1e-6 needs fp32: bf16 autocast (on by default on CPUs with bf16 instructions)
# rounds the convolutions of a 4-image and an 8-image batch differently.
NO_DROPOUT = ["--set", "model.dropout=0", "--set", "model.dropout_first=0", "--set", "runtime.amp=off"]


def unetkit(*args: str, ranks: int = 0, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`unetkit ARGS` in a fresh process, or under `torchrun --nproc-per-node RANKS`; fails the test on exit != 0."""
    launcher = [str(TORCHRUN), "--standalone", "--nproc-per-node", str(ranks), "-m", "unetkit"] if ranks else \
        [sys.executable, "-m", "unetkit"]
    done = subprocess.run([*launcher, *args], cwd=cwd, capture_output=True, text=True, timeout=180,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def metrics(run: Path) -> list[dict[str, float]]:
    with (run / "metrics.csv").open() as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ddp")
    generate_synthetic(folder / "syn", 24, size=32, seed=4)
    return folder


@pytest.fixture(scope="module")
def ddp_and_single(work: Path) -> tuple[Path, Path]:
    unetkit("train", "--data", "syn", "--out", "ddp", *TINY, *NO_DROPOUT, ranks=2, cwd=work)
    unetkit("train", "--data", "syn", "--out", "single", *TINY, *NO_DROPOUT, cwd=work)
    return work / "ddp", work / "single"


@SHARES_THE_TRAINED_PAIR
def test_two_ranks_train_like_one_process_with_the_same_global_batch(ddp_and_single: tuple[Path, Path]) -> None:
    ddp, single = ddp_and_single
    a, b = metrics(ddp), metrics(single)
    assert len(a) == len(b) == 2  # one metrics.csv row per epoch, written once
    # 19 training images, global batch 8 = 4 + 4 per rank (the last, 3, split 2 + 1): the same gradient steps
    assert a[0]["train_loss"] == pytest.approx(b[0]["train_loss"], abs=1e-6)
    assert a[1]["train_loss"] == pytest.approx(b[1]["train_loss"], abs=1e-6)
    assert a[1]["val_loss"] == pytest.approx(b[1]["val_loss"], abs=1e-6)  # validation reduced over both ranks
    assert sorted(p.name for p in (ddp / "checkpoints").iterdir()) == ["best.safetensors", "last.safetensors"]
    assert (ddp / "report.html").stat().st_size > 10_000
    checkpoint = load_checkpoint(ddp / "checkpoints" / "last.safetensors")
    assert checkpoint.state.epoch == 2 and set(checkpoint.rank_rng) == {1}  # rank 1's dropout stream is kept


def test_resume_under_torchrun_continues_like_an_uninterrupted_run(work: Path) -> None:
    unetkit("train", "--data", "syn", "--out", "straight", *TINY, "--epochs", "3", ranks=2, cwd=work)
    unetkit("train", "--data", "syn", "--out", "resumed", *TINY, ranks=2, cwd=work)
    unetkit("train", "--data", "syn", "--out", "resumed", *TINY, "--epochs", "3", "--resume", ranks=2, cwd=work)
    a, b = metrics(work / "straight"), metrics(work / "resumed")
    assert len(a) == len(b) == 3
    # with dropout on, equal third epochs need both ranks' generators restored, not only rank 0's
    assert b[2]["train_loss"] == pytest.approx(a[2]["train_loss"], abs=1e-6)
    assert b[2]["val_loss"] == pytest.approx(a[2]["val_loss"], abs=1e-6)


def test_two_ranks_train_on_patches_like_one_process(work: Path) -> None:
    """Patch training: each rank draws its own patches of every global batch (16 = 8 + 8 patches of 16 x 16,
    half centred on foreground, strong augmentation), and the two ranks step like one process."""
    patches = ["--patch-size", "16", "--augment", "strong", "--set", "data.foreground_share=0.5"]
    unetkit("train", "--data", "syn", "--out", "ddp_patches", *TINY, *NO_DROPOUT, *patches, ranks=2, cwd=work)
    unetkit("train", "--data", "syn", "--out", "single_patches", *TINY, *NO_DROPOUT, *patches, cwd=work)
    a, b = metrics(work / "ddp_patches"), metrics(work / "single_patches")
    assert len(a) == len(b) == 2
    assert a[1]["train_loss"] == pytest.approx(b[1]["train_loss"], abs=1e-6)
    assert a[1]["val_loss"] == pytest.approx(b[1]["val_loss"], abs=1e-6)


def test_time_budget_stops_both_ranks_together(work: Path) -> None:
    done = unetkit("train", "--data", "syn", "--out", "budget", *TINY, "--epochs", "500", "--time-budget", "0.05",
                   "--set", "schedule=cosine",  # a learning rate driven by the clock the ranks agree on
                   "--set", "early_stopping_patience=0",  # the budget, not the seed's early stopping, ends it
                   ranks=2, cwd=work)
    rows = metrics(work / "budget")
    assert 1 <= len(rows) < 500
    assert "time budget" in done.stdout
    assert (work / "budget" / "model.safetensors").stat().st_size > 1000


@SHARES_THE_TRAINED_PAIR
def test_distributed_predict_writes_what_one_process_writes(ddp_and_single: tuple[Path, Path], work: Path) -> None:
    model = str(ddp_and_single[0] / "model.safetensors")
    images = work / "to_predict"
    images.mkdir()
    for path in sorted((work / "syn" / "images").iterdir())[:7]:
        (images / path.name).write_bytes(path.read_bytes())
    big = np.random.default_rng(0).integers(0, 255, (300, 170), dtype=np.uint8)  # tiled at --tile 128
    from PIL import Image

    Image.fromarray(big).save(images / "big.png")
    for out, ranks in (("pred_ddp", 2), ("pred_single", 0)):
        unetkit("predict", "--model", model, "--input", str(images), "--out", out, "--tile", "128",
                "--rle", f"{out}.csv", "--device", "cpu", ranks=ranks, cwd=work)
    ddp_files = sorted(p.name for p in (work / "pred_ddp").iterdir())
    assert ddp_files == sorted(p.name for p in (work / "pred_single").iterdir())
    assert len([name for name in ddp_files if name.endswith(".png")]) == 8
    for name in ddp_files:
        if name.endswith(".png"):
            assert np.array_equal(read_array(work / "pred_ddp" / name), read_array(work / "pred_single" / name)), name
    assert (work / "pred_ddp.csv").read_text() == (work / "pred_single.csv").read_text()
    assert len((work / "pred_ddp.csv").read_text().splitlines()) == 9  # header + 8 images


def test_sync_batchnorm_on_cpu_ranks_is_refused_before_anything_is_written(work: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from unetkit.api import train
    from unetkit.config import DataConfig, RuntimeConfig, TrainConfig
    from unetkit.errors import UserError

    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; the refusal comes before joining a group
    monkeypatch.setenv("RANK", "0")
    config = TrainConfig(out_dir=str(tmp_path / "run"), data=DataConfig(data_dir=str(work / "syn")),
                         runtime=RuntimeConfig(device="cpu", sync_batchnorm=True))
    with pytest.raises(UserError, match="sync_batchnorm needs CUDA GPUs"):
        train(config)
    assert not (tmp_path / "run").exists()


@SHARES_THE_TRAINED_PAIR
def test_distributed_evaluate_prints_and_writes_the_single_process_figures(ddp_and_single: tuple[Path, Path],
                                                                           work: Path) -> None:
    model = str(ddp_and_single[0] / "model.safetensors")
    printed = []
    for csv_name, ranks in (("eval_ddp.csv", 2), ("eval_single.csv", 0)):
        done = unetkit("evaluate", "--model", model, "--data", "syn", "--json", "--csv", csv_name, "--device", "cpu",
                       ranks=ranks, cwd=work)
        printed.append([line for line in done.stdout.splitlines() if line.startswith("{")])
    assert len(printed[0]) == 1 and printed[0] == printed[1]  # rank 0 alone prints, the same figures
    assert '"n_images": 24' in printed[0][0]
    assert (work / "eval_ddp.csv").read_text() == (work / "eval_single.csv").read_text()

