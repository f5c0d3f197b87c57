"""Validation inside a region and with chosen figures: val_metrics columns, a field of view that the
figures and the threshold sweep respect, and the best epoch chosen by a boundary figure."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetkit.cli.main import main
from unetkit.config import DataConfig, TrainConfig
from unetkit.data.dataset import LabelledSet, load_labelled
from unetkit.data.preprocess import Preprocess
from unetkit.data.synthetic import generate_synthetic
from unetkit.measures import monitor_minimizes
from unetkit.models import UNet
from unetkit.training.losses import get_loss
from unetkit.training.threshold import tune_on_validation
from unetkit.training.validation import validate


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[LabelledSet, list[np.ndarray], Path]:
    """8 synthetic 32x32 images, a disc-shaped region per image, and the data folder (with fov/)."""
    data = generate_synthetic(tmp_path_factory.mktemp("vm") / "set", 8, size=32, seed=5)
    rows, cols = np.mgrid[:32, :32]
    region = (rows - 16) ** 2 + (cols - 16) ** 2 <= 12**2
    (data / "fov").mkdir()
    for image in sorted((data / "images").iterdir()):
        Image.fromarray((region * 255).astype(np.uint8)).save(data / "fov" / f"{image.stem}.png")
    return load_labelled(data, 1, 1, show_progress=False), [region] * 8, data


def _wrong_outside(data: LabelledSet, regions: list[np.ndarray]) -> LabelledSet:
    masks = np.stack([np.where(r, m, 1 - m) for m, r in zip(data.masks, regions)]).astype(data.masks.dtype)
    return LabelledSet(data.stems, data.images, masks, data.pairs)


def test_validation_figures_inside_a_region_ignore_the_truth_outside(labelled) -> None:
    data, regions, _ = labelled
    torch.manual_seed(1)
    net = UNet(start_neurons=4, depth=2).eval()
    args = (Preprocess((0.45,), (0.2,)), get_loss("bce"), torch.device("cpu"))
    names = ("hd95", "nsd@1", "auc")
    clean, p_clean = validate(net, data, *args, batch_size=4, regions=regions, measures=names, keep_probabilities=True)
    wrong, p_wrong = validate(net, _wrong_outside(data, regions), *args, batch_size=4, regions=regions, measures=names,
                              keep_probabilities=True)
    for name in ("iou", "dice", "tgs_map", "pixel_accuracy", *names):
        assert wrong[name] == clean[name], name
    assert wrong["loss"] != clean["loss"]  # the loss still sees every pixel
    config = TrainConfig()
    sweeps = []
    for folder, (maps, truths) in (("a", (p_clean, data.masks)), ("b", (p_wrong, _wrong_outside(data, regions).masks))):
        (Path.cwd() / folder).mkdir()
        figures, threshold, _ = tune_on_validation(config, Path(folder), maps, torch.from_numpy(truths), regions)
        sweeps.append(((Path(folder) / "threshold_sweep.csv").read_text(), figures, threshold))
    assert sweeps[0] == sweeps[1]


def test_boundary_monitors_go_down() -> None:
    assert [monitor_minimizes(m) for m in ("val_loss", "val_iou", "val_hd95", "val_assd", "val_nsd@2", "val_auc")] == [
        True, False, True, True, False, False]
    assert TrainConfig(val_metrics="hd95", monitor="val_hd95").monitor == "val_hd95"


@pytest.mark.slow
def test_train_with_fov_and_val_metrics_writes_their_columns(labelled, tmp_path: Path) -> None:
    _, _, data = labelled
    code = main(["train", "-q", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "2", "--batch-size",
                 "4", "--device", "cpu", "--fov", str(data / "fov"), "--monitor", "val_hd95", "--set",
                 "val_metrics=hd95,nsd@1", "--set", "model.start_neurons=4", "--set", "model.depth=2"])
    assert code == 0
    with (tmp_path / "run" / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and {"val_hd95", "val_nsd@1"} <= set(rows[0])
    assert all(float(row["val_hd95"]) >= 0 for row in rows)
    best = min(range(2), key=lambda i: (float(rows[i]["val_hd95"]), i)) + 1
    from unetkit.export.model_file import load_model

    record = load_model(tmp_path / "run" / "model.safetensors").training
    assert record["best_epoch_metrics"]["epoch"] == best
    assert {"hd95", "nsd@1"} <= set(record["val_at_threshold"])
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Validation figures with 95% intervals" in page and "inside the regions of" in page
    assert "<td>hd95</td>" in page and "<td>nsd@1</td>" in page and "NSD tolerances in pixels" in page
    assert TrainConfig(data=DataConfig(fov_dir=str(data / "fov"))).data.fov_dir.endswith("fov")
