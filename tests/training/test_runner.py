"""Runs beyond one split: k-fold ensembles, multi-class training, the few-image regime of the paper."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic_scenes import synthetic_cells, synthetic_classes, write_examples
from unetkit.api import evaluate, resume, train
from unetkit.config import (
    DataConfig,
    EvaluateConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
)
from unetkit.data.dataset import load_labelled
from unetkit.data.split import coverage_classes, stratified_split
from unetkit.data.synthetic import generate_synthetic
from unetkit.errors import UserError
from unetkit.export.model_file import load_model
from unetkit.models.ensemble import Ensemble

pytestmark = pytest.mark.slow
SMALL = ModelConfig(start_neurons=8, batch_norm=True, dropout_first=0.1, dropout=0.1)
TINY = ModelConfig(start_neurons=4, depth=2)


def test_two_folds_make_one_ensemble_with_an_out_of_fold_score(tmp_path: Path) -> None:
    data = generate_synthetic(tmp_path / "d", 24, size=32, seed=2)
    result = train(TrainConfig(out_dir=str(tmp_path / "run"), data=DataConfig(data_dir=str(data)), model=SMALL,
                               epochs=2, batch_size=8, folds=2))
    saved = load_model(result.model_path)
    assert isinstance(saved.net, Ensemble) and len(saved.net.members) == 2
    assert result.n_val == 24 and result.val_metrics["n_images"] == 24  # every image scored out of fold
    for fold in (0, 1):
        assert (tmp_path / "run" / f"fold_{fold}" / "model.safetensors").is_file()
        assert (tmp_path / "run" / f"fold_{fold}" / "report.html").stat().st_size > 10_000
    page = (tmp_path / "run" / "report.html").read_text()  # the out-of-fold page links the folds' own
    assert '<a href="fold_0/report.html">' in page and '<a href="fold_1/report.html">' in page
    assert f"{result.val_metrics['iou']:.4f}" in page and page.count("data:image/png;base64,") == 2
    scores = evaluate(EvaluateConfig(model_path=str(result.model_path), data_dir=str(data),
                                     csv_path=str(tmp_path / "e.csv")))
    assert scores.metrics["n_images"] == 24


def test_one_fold_alone(tmp_path: Path) -> None:
    data = generate_synthetic(tmp_path / "d", 12, size=32, seed=2)
    result = train(TrainConfig(out_dir=str(tmp_path / "run"), data=DataConfig(data_dir=str(data)), model=SMALL,
                               epochs=1, batch_size=8, folds=3, fold=1))
    assert result.model_path == tmp_path / "run" / "fold_1" / "model.safetensors"
    assert not (tmp_path / "run" / "fold_0").exists()
    assert result.n_val == 4


def test_three_class_training_reaches_a_useful_mean_iou(tmp_path: Path) -> None:
    data = write_examples(tmp_path / "three", [synthetic_classes(i, seed=4) for i in range(80)], mask_scale=1)
    result = train(TrainConfig(out_dir=str(tmp_path / "run"), data=DataConfig(data_dir=str(data)), epochs=12,
                               batch_size=8, optim=OptimConfig(lr=3e-3), loss=LossConfig(name="bce_dice"), monitor="val_iou",
                               model=ModelConfig(num_classes=3, start_neurons=8, batch_norm=True, dropout_first=0.0,
                                                 dropout=0.0)))
    assert result.threshold is None
    scores = evaluate(EvaluateConfig(model_path=str(result.model_path), data_dir=str(data),
                                     csv_path=str(tmp_path / "e.csv")))
    assert len(scores.metrics["class_iou"]) == 3 and len(scores.metrics["confusion_matrix"]) == 3
    assert sum(map(sum, scores.metrics["confusion_matrix"])) == 80 * 48 * 48
    assert scores.metrics["iou"] >= 0.75  # mean IoU over the three classes


def _cells(root: Path, count: int, seed: int) -> Path:
    return write_examples(root, [synthetic_cells(i, seed=seed) for i in range(count)], prefix="cell")


def test_few_images_strong_augmentation_and_border_weights_beat_no_augmentation(tmp_path: Path) -> None:
    """The paper's regime: 20 images of touching cells (16 to train), scored on 40 held-out images:
    strong augmentation plus the border-weighted, class-balanced cross-entropy (sigma scaled to these
    ~7-px cells) must beat no augmentation on held-out IoU."""
    train_dir, test_dir = _cells(tmp_path / "train", 20, seed=1), _cells(tmp_path / "test", 40, seed=2)
    common = dict(epochs=40, batch_size=4, optim=OptimConfig(lr=3e-3), model=SMALL, monitor="val_iou",
                  early_stopping_patience=0, schedule=ScheduleConfig(name="cosine"))
    plain = train(TrainConfig(out_dir=str(tmp_path / "plain"), **common,
                              data=DataConfig(data_dir=str(train_dir), augment="none")))
    paper = train(TrainConfig(out_dir=str(tmp_path / "paper"), **common,
                              loss=LossConfig(name="weighted_ce", border_sigma=2.0, balance_classes="inverse"),
                              data=DataConfig(data_dir=str(train_dir), augment="strong",
                                              augment_params={"p_vflip": 0.5, "p_rotate90": 0.5})))
    held_out = [evaluate(EvaluateConfig(model_path=str(r.model_path), data_dir=str(test_dir),
                                        csv_path=str(tmp_path / f"{name}.csv"))).metrics["iou"]
                for name, r in (("plain", plain), ("paper", paper))]
    assert held_out[1] - held_out[0] >= 0.015, held_out


def test_multilabel_training_predict_and_evaluate(tmp_path: Path) -> None:
    """Two overlapping labels: 'calm body' and 'any body' (a superset), stored as 2-page TIFF masks."""
    import tifffile

    from unetkit.api import predict
    from unetkit.config import PredictConfig
    from unetkit.data.io import write_png

    root = tmp_path / "labels"
    for i in range(60):
        image, classes = synthetic_classes(i, seed=5)
        write_png(root / "images" / f"m_{i:03d}.png", image)
        labels = np.stack([classes == 1, classes > 0]).astype(np.uint8) * 255  # (2, H, W)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / "masks" / f"m_{i:03d}.tif", labels, photometric="minisblack")
    model = ModelConfig(num_classes=2, multilabel=True, start_neurons=8, batch_norm=True, dropout_first=0.0,
                        dropout=0.0)
    result = train(TrainConfig(out_dir=str(tmp_path / "run"), data=DataConfig(data_dir=str(root)), model=model,
                               epochs=10, batch_size=8, optim=OptimConfig(lr=3e-3), loss=LossConfig(name="bce_dice"),
                               monitor="val_iou"))
    assert result.threshold is not None
    scores = evaluate(EvaluateConfig(model_path=str(result.model_path), data_dir=str(root),
                                     csv_path=str(tmp_path / "e.csv"))).metrics
    assert len(scores["class_iou"]) == 2 and scores["iou"] >= 0.7
    predict(PredictConfig(model_path=str(result.model_path), input_path=str(root / "images" / "m_000.png"),
                          out_dir=str(tmp_path / "pred")))
    written = tifffile.imread(tmp_path / "pred" / "m_000.tif")
    assert written.shape == (2, 48, 48) and set(np.unique(written)) <= {0, 255}
    assert (written[0] <= written[1]).mean() > 0.95  # the learned labels keep calm body inside any body


def test_multilabel_mask_with_wrong_channel_count_is_named(tmp_path: Path) -> None:
    from unetkit.errors import UserError

    data = generate_synthetic(tmp_path / "d", 4, size=16, seed=1)  # single-channel masks
    with pytest.raises(UserError, match="mask has 1 channels but the model has 2 labels"):
        train(TrainConfig(out_dir=str(tmp_path / "run"), data=DataConfig(data_dir=str(data)),
                          model=ModelConfig(num_classes=2, multilabel=True, start_neurons=4), epochs=1))


def test_four_channel_tiff_stacks_train_and_predict(tmp_path: Path) -> None:
    import tifffile

    from unetkit.api import predict
    from unetkit.config import PredictConfig
    from unetkit.data.io import write_png

    root = tmp_path / "stacks"
    (root / "images").mkdir(parents=True)
    for i in range(12):
        image, mask = synthetic_classes(i, seed=6, size=32)
        stack = np.stack([image, 255 - image, image // 2, np.full_like(image, 7)])  # (4, H, W) channel-first
        tifffile.imwrite(root / "images" / f"s_{i:02d}.tif", stack, photometric="minisblack")
        write_png(root / "masks" / f"s_{i:02d}.png", (mask > 0).astype(np.uint8) * 255)
    result = train(TrainConfig(out_dir=str(tmp_path / "run"), data=DataConfig(data_dir=str(root)), epochs=1,
                               batch_size=4, model=ModelConfig(in_channels=4, start_neurons=4)))
    assert load_model(result.model_path).config.in_channels == 4
    predict(PredictConfig(model_path=str(result.model_path), input_path=str(root / "images"),
                          out_dir=str(tmp_path / "pred")))
    assert len(list((tmp_path / "pred").glob("s_*.png"))) == 12


def _with_other_masks(data: Path, out: Path) -> int:
    """Replace data's masks by those of another synthetic set with the same names; the number that differ."""
    other = generate_synthetic(out, 12, size=32, seed=6)
    changed = 0
    for mask in sorted((other / "masks").iterdir()):
        changed += mask.read_bytes() != (data / "masks" / mask.name).read_bytes()
        shutil.copyfile(mask, data / "masks" / mask.name)
    return changed


def _split(run: Path) -> dict[str, list[str]]:
    return json.loads((run / "split.json").read_text())


def test_resume_on_changed_masks_is_refused_naming_a_file_and_allowed_keeps_the_split(tmp_path: Path) -> None:
    data = generate_synthetic(tmp_path / "d", 12, size=32, seed=5)
    run = tmp_path / "run"
    train(TrainConfig(out_dir=str(run), data=DataConfig(data_dir=str(data)), model=TINY, epochs=1, batch_size=4))
    before = _split(run)
    changed = _with_other_masks(data, tmp_path / "other")
    with pytest.raises(UserError, match=rf"masks/syn_\d+\.png: changed since .*run began \({changed} of 24 files "
                                        r"differ\); --resume refuses changed data \(--set data.allow_changed=true"):
        resume(run, {"epochs": 2})
    # the masks as they are now would split otherwise: the stored split is what keeps the images in place
    strata = coverage_classes(load_labelled(data, 1, 1, show_progress=False).coverage())
    assert list(stratified_split(strata, 0.2, 0)[1]) != [int(stem[-5:]) for stem in before["val"]]
    assert resume(run, {"epochs": 2, "data": {"allow_changed": True}}).epochs_done == 2
    assert _split(run) == before
    assert "allow_changed: false" in (run / "config.yaml").read_text()  # the consent is not stored
    assert resume(run, {"epochs": 3}).epochs_done == 3  # data.json now records the corrected masks


def test_folds_resume_with_their_stored_assignment(tmp_path: Path) -> None:
    data = generate_synthetic(tmp_path / "d", 12, size=32, seed=5)
    run = tmp_path / "run"
    train(TrainConfig(out_dir=str(run), data=DataConfig(data_dir=str(data)), model=TINY, epochs=1, batch_size=4,
                      folds=2, fold=0))
    folds = _split(run)["folds"]
    assert len(folds) == 2 and sorted(folds[0] + folds[1]) == [f"syn_{i:05d}" for i in range(12)]
    _with_other_masks(data, tmp_path / "other")
    resume(run, {"fold": 1, "data": {"allow_changed": True}})
    assert _split(run)["folds"] == folds and _split(run / "fold_1")["val"] == folds[1]


def test_a_plan_from_before_the_plan_chose_keeps_the_configs_choices(tmp_path: Path) -> None:
    """A plan.json written before the plan picked the monitor, augmentation and class weights holds "" for them:
    the resumed run trains with its config.yaml's values, as it did before."""
    import dataclasses

    from unetkit.data.fingerprint import fingerprint
    from unetkit.training.plan import make_plan
    from unetkit.training.runner import _settings

    plan = make_plan(fingerprint(generate_synthetic(tmp_path / "syn", 4, size=32, seed=1)), "cpu", memory_bytes=2**30)
    old = dataclasses.replace(plan, monitor="", augment="", balance_classes="")
    config = TrainConfig(monitor="val_iou", data=DataConfig(augment="flips"), loss=LossConfig(balance_classes="none"))
    settings = _settings(config, old)
    assert (settings.monitor, settings.augment, settings.balance_classes) == ("val_iou", "flips", "none")
    assert _settings(config, plan).monitor == plan.monitor != ""
