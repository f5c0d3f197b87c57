"""Patch training end to end: mixed sizes without resizing, the plan in the run and the model file,
validation equal to evaluate on ragged sets, exact resume, large TIFFs read by region, and a model
trained on 128^2 patches that segments a large held-out image."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from unetkit.api import evaluate, train
from unetkit.config import DataConfig, EvaluateConfig, ModelConfig, TrainConfig
from unetkit.data import patch_set
from unetkit.data.dataset import survey
from unetkit.data.io import write_png
from unetkit.data.patch_set import patch_set_of, validation_set
from unetkit.data.synthetic import synthetic_large, write_large_synthetic
from unetkit.export.model_file import load_model, save_model
from unetkit.inference.predictor import Predictor
from unetkit.metrics import MetricAccumulator
from unetkit.training.losses import get_loss
from unetkit.training.validation import validate

pytestmark = pytest.mark.slow

SIZES = [(70, 90), (130, 100), (96, 96), (57, 140), (120, 120), (80, 64)] * 2


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 images of 6 sizes (57 to 140 px a side), binary masks 0/255."""
    root = tmp_path_factory.mktemp("mixed") / "set"
    for index, (h, w) in enumerate(SIZES):
        image, mask = synthetic_large(index, side=max(h, w))
        write_png(root / "images" / f"m{index:02d}.png", image[:h, :w])
        write_png(root / "masks" / f"m{index:02d}.png", (mask[:h, :w] * 255).astype(np.uint8))
    return root


def _config(data: Path, out: Path, **data_fields: object) -> TrainConfig:
    return TrainConfig(out_dir=str(out), data=DataConfig(data_dir=str(data), **data_fields), batch_size=4, epochs=2,
                       model=ModelConfig(start_neurons=4, depth=2, dropout_first=0.0, dropout=0.0))


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_mixed_sizes_train_on_planned_patches_and_validate_like_evaluate(mixed: Path, tmp_path: Path) -> None:
    """No size policy given: the plan picks patches (sizes differ), records itself in plan.json and the model
    file, and predict's default tile becomes the patch size. Validation of the ragged held-out set (2 or more
    sizes) gives the figures `evaluate` reports for the same network and rule on the same images."""
    result = train(_config(mixed, tmp_path / "run"))
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["mode"] == "patch" and plan["patch_size"] == 88  # the smaller median side (88 x 98), under 256
    assert plan["why"]["mode"].startswith("sizes differ (57x")
    saved = load_model(result.model_path)
    assert saved.training["plan"]["predict_tile"] == 88 and Predictor(saved).tile == 88
    assert saved.training["config"]["data"]["patch_size"] is None  # what was asked: the plan chose (not copied in)
    val_stems = json.loads((tmp_path / "run" / "split.json").read_text())["val"]
    held = tmp_path / "held"
    for folder in ("images", "masks"):
        (held / folder).mkdir(parents=True)
        for stem in val_stems:
            shutil.copy(mixed / folder / f"{stem}.png", held / folder)
    val_set = validation_set(patch_set_of(survey(held, 1, 1, measure=False, show_progress=False), 1))
    assert val_set.ragged and len({m.shape for m in val_set.masks}) >= 2
    figures, kept = validate(saved.net, val_set, saved.preprocess, get_loss("bce"), torch.device("cpu"), 4,
                             threshold=saved.threshold, keep_probabilities=True, tile=88)
    assert isinstance(kept, list) and [k.shape for k in kept] == [m.shape for m in val_set.masks]
    save_model(tmp_path / "plain.safetensors", saved.net, saved.preprocess, threshold=saved.threshold,
               training={"plan": saved.training["plan"]})  # the rule without post-processing, as validate applies it
    scored = evaluate(EvaluateConfig(model_path=str(tmp_path / "plain.safetensors"), data_dir=str(held), device="cpu",
                                     csv_path=str(tmp_path / "e.csv"))).metrics
    for name in ("iou", "dice", "pixel_accuracy", "tgs_map", "mean_image_iou", "n_images"):
        assert figures[name] == pytest.approx(scored[name], abs=1e-12), name


def test_whole_images_when_patch_size_is_zero(mixed: Path, tmp_path: Path) -> None:
    """patch_size 0 keeps whole-image training, and a mixed folder is then refused with the hint to resize."""
    from unetkit.errors import UserError

    with pytest.raises(UserError, match="size-policy resize"):
        train(_config(mixed, tmp_path / "whole", patch_size=0))


def test_device_batches_on_is_refused_for_patches(mixed: Path, tmp_path: Path) -> None:
    """runtime.device_batches: on holds whole images on the device; patches are the CPU loader's: one line."""
    import dataclasses

    from unetkit.errors import UserError

    config = _config(mixed, tmp_path / "dev", patch_size=32)
    config = dataclasses.replace(config, runtime=dataclasses.replace(config.runtime, device_batches="on"))
    with pytest.raises(UserError, match="runtime.device_batches: on does not support patch training"):
        train(config)


def test_patch_training_resumes_exactly(mixed: Path, tmp_path: Path) -> None:
    """2 epochs + --resume to 3 equals 3 straight epochs: the same patches, augmentation and optimiser state."""
    fields = {"patch_size": 32, "augment": "strong", "patches_per_epoch": 12}
    train(_config(mixed, tmp_path / "straight", **fields).__class__(
        **{**_config(mixed, tmp_path / "straight", **fields).__dict__, "epochs": 3}))
    train(_config(mixed, tmp_path / "resumed", **fields))
    config = _config(mixed, tmp_path / "resumed", **fields)
    train(config.__class__(**{**config.__dict__, "epochs": 3}), resume=True)
    a, b = _rows(tmp_path / "straight" / "metrics.csv"), _rows(tmp_path / "resumed" / "metrics.csv")
    assert len(a) == len(b) == 3
    assert float(b[2]["train_loss"]) == pytest.approx(float(a[2]["train_loss"]), abs=1e-6)
    assert float(b[2]["val_loss"]) == pytest.approx(float(a[2]["val_loss"]), abs=1e-6)


def test_large_tiffs_train_by_region_with_windowed_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three 2100^2 tiled TIFFs (3 classes) stay on disk; validation scores windows of the held-out one."""
    monkeypatch.setattr(patch_set, "VAL_WHOLE_PIXELS", 1024**2)
    monkeypatch.setattr(patch_set, "VAL_WINDOW", 256)
    data = write_large_synthetic(tmp_path / "big", 3, side=2100, classes=3, block=1024)
    config = TrainConfig(out_dir=str(tmp_path / "run"), data=DataConfig(data_dir=str(data), patch_size=64,
                                                                        patches_per_epoch=16, val_fraction=0.34),
                         batch_size=8, epochs=1, model=ModelConfig(num_classes=3, start_neurons=4, depth=2))
    result = train(config)
    assert result.n_train == 2 and result.epochs_done == 1
    assert result.val_metrics["n_images"] == patch_set.VAL_WINDOWS  # four 256^2 windows of the 2100^2 image
    assert load_model(result.model_path).training["plan"]["mode"] == "patch"
    from unetkit.api import report

    page = report(tmp_path / "run").read_text()  # its held-out image is too large for the best/worst examples
    assert "Not shown: the 1 validation image(s) are over 1 Mpx" in page


EPOCHS_128 = 12


def test_128_patches_segment_a_large_held_out_image(tmp_path: Path) -> None:
    """Six 384^2 scenes, trained on 128^2 patches for a fixed number of epochs (not a time budget: the
    figure must not depend on the machine's speed); a held-out 1024^2 scene (8x the training images'
    area) predicted in tiles at IoU >= 0.85."""
    root = tmp_path / "scenes"
    for index in range(6):
        image, mask = synthetic_large(index, side=384, seed=2)
        write_png(root / "images" / f"s{index}.png", image)
        write_png(root / "masks" / f"s{index}.png", mask * 255)
    config = TrainConfig(out_dir=str(tmp_path / "run"), data=DataConfig(data_dir=str(root), patch_size=128,
                                                                        augment="none"),
                         batch_size=8, epochs=EPOCHS_128, early_stopping_patience=0,
                         model=ModelConfig(start_neurons=8, batch_norm=True, dropout_first=0.0, dropout=0.0))
    result = train(config)
    image, truth = synthetic_large(100, side=1024, seed=2)
    saved = load_model(result.model_path)
    probabilities = Predictor(saved).probabilities(image[None, :, :, None])  # tiled: 1024 > the 128 tile
    predicted = (probabilities[0, 0] > saved.threshold).astype(np.uint8)
    accumulator = MetricAccumulator(1)
    accumulator.update(torch.from_numpy(predicted[None]), torch.from_numpy(truth[None]))
    iou = accumulator.summary()["iou"]
    print(f"held-out 1024^2 IoU {iou:.4f} after {result.epochs_done} epochs")
    assert iou >= 0.85


def _scenes(root: Path, masks: str) -> Path:
    """The mixed sizes of SIZES[:6] as 3-class scenes; masks written as `masks` says."""
    import tifffile

    for index, (h, w) in enumerate(SIZES[:6] + SIZES[:2]):
        image, mask = synthetic_large(index, side=max(h, w), classes=3)
        image, mask = image[:h, :w], mask[:h, :w]
        write_png(root / "images" / f"c{index:02d}.png", image)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        if masks == "labels":  # 2 labels, "line" and "anything", as 2-page TIFFs (the second holds the first)
            tifffile.imwrite(root / "masks" / f"c{index:02d}.tif", np.stack([mask == 2, mask > 0]).astype(np.uint8) * 255,
                             photometric="minisblack")
        else:  # class indices, a 3-px unlabelled (255) strip at the top
            mask[:3] = 255
            write_png(root / "masks" / f"c{index:02d}.png", mask)
    return root


@pytest.mark.parametrize("case", ["folds", "multilabel", "weighted_ce_ignore_index"])
def test_patch_training_with_folds_labels_and_weighted_losses(case: str, mixed: Path, tmp_path: Path) -> None:
    """Patches under --folds (one ensemble file, out-of-fold figures on ragged sizes), multi-label masks, and
    the paper's border-weighted loss with an ignored value, all on mixed sizes."""
    config = _config(mixed, tmp_path / "run", patch_size=32)
    if case == "folds":
        config = config.__class__(**{**config.__dict__, "folds": 2, "epochs": 1})
    elif case == "multilabel":
        config = config.__class__(**{**config.__dict__, "data": DataConfig(
            data_dir=str(_scenes(tmp_path / "labels", "labels")), patch_size=32), "model": ModelConfig(
            num_classes=2, multilabel=True, start_neurons=4, depth=2)})
    else:
        config = config.__class__(**{**config.__dict__, "data": DataConfig(
            data_dir=str(_scenes(tmp_path / "classes", "indices")), patch_size=32, ignore_index=255),
            "model": ModelConfig(num_classes=3, start_neurons=4, depth=2),
            "loss": config.loss.__class__(name="weighted_ce")})
    result = train(config)
    saved = load_model(result.model_path)
    assert saved.training["plan"]["patch_size"] == 32
    if case == "folds":
        assert result.stop_reason == "folds" and len(saved.net.members) == 2
        assert result.n_train == result.n_val == len(SIZES) and 0.0 <= result.val_metrics["iou"] <= 1.0
    elif case == "multilabel":
        assert result.threshold is not None and len(result.val_metrics["class_iou"]) == 2
    else:
        assert len(result.val_metrics["class_iou"]) == 3
        assert np.isfinite(float(_rows(tmp_path / "run" / "metrics.csv")[-1]["train_loss"]))


def test_wide_float_data_is_clipped_as_planned_in_training_and_every_predictor(tmp_path: Path) -> None:
    """CT-like float32 TIFFs (-1000 .. 3000 with rare 30000 outliers): the plan's clip_zscore is what trains;
    the model file stores the percentile bounds, PyTorch and ONNX-style (NumPy) standardisation clip alike."""
    import tifffile

    root = tmp_path / "ct"
    for index in range(8):
        image, mask = synthetic_large(index, side=64)
        values = image.astype(np.float32) * 16.0 - 1000.0
        values[np.random.default_rng(index).random(values.shape) < 0.002] = 30000.0
        (root / "images").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / "images" / f"ct{index}.tif", values)
        write_png(root / "masks" / f"ct{index}.png", mask * 255)
    result = train(_config(root, tmp_path / "run"))
    saved = load_model(result.model_path)
    plan = saved.training["plan"]
    assert plan["normalization"] == "clip_zscore" and plan["mode"] == "whole"
    preprocess = saved.preprocess
    assert preprocess.clip_low == tuple(plan["clip_low"]) and preprocess.clip_high == tuple(plan["clip_high"])
    assert -1000.0 <= preprocess.clip_low[0] < preprocess.clip_high[0] < 30000.0
    spike = np.full((1, 4, 4, 1), 30000.0, np.float32)
    top = (preprocess.clip_high[0] - preprocess.mean[0]) / preprocess.std[0]
    assert np.allclose(preprocess.to_array(spike), top) and torch.allclose(preprocess.to_tensor(spike), torch.tensor(top))
