"""The operations unetkit offers; the CLI only parses arguments into configs and calls these.

train(TrainConfig) -> TrainResult, predict(PredictConfig) -> PredictResult,
evaluate(EvaluateConfig) -> EvaluateResult, load_model(path) -> SavedModel, demo(...).
Every user mistake surfaces as `UserError` before anything is written where possible,
and every file is written atomically.

Each entry point imports the machinery it needs when called: `predict` with an ONNX model
must run where PyTorch is not installed, so nothing here imports torch at module level.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetkit import distributed
from unetkit.config import EvaluateConfig, PredictConfig, TrainConfig
from unetkit.errors import UserError
from unetkit.fileio import make_dir, write_csv, write_text
from unetkit.inference.job import PredictionJob, PredictResult
from unetkit.runtime import log

if TYPE_CHECKING:
    from unetkit.export.model_file import SavedModel
    from unetkit.training.runner import TrainResult

__all__ = ["evaluate", "load_model", "predict", "stored_config", "train", "demo", "EvaluateResult", "PredictResult"]

DEMO_MARKER = ".unetkit-demo"


@dataclass
class EvaluateResult:
    """Data-set figures (iou, dice, pixel_accuracy, tgs_map, n_images, ...) and the per-image CSV."""

    metrics: dict[str, Any]
    csv_path: Path


def train(config: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Train a U-Net on config.data.data_dir into config.out_dir; with `resume`, continue that run.

    On resume, `config` is the run's stored config with whatever should change (more epochs,
    a new time budget; see `stored_config`); the architecture must stay the same. With
    config.folds = K, trains K folds and writes one ensemble model file (see training/runner.py).
    """
    from unetkit.training.runner import run_training

    return run_training(config, resume=resume)


def stored_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The config a run in `run_dir` was trained with, as plain data (the base for --resume)."""
    from unetkit.training.runner import stored_config as read_stored

    return read_stored(run_dir)


def load_model(path: str | os.PathLike[str]) -> SavedModel:
    """A unetkit model file (safetensors + metadata) as a SavedModel on the CPU, in eval mode:
    .net, .preprocess, .threshold, .postprocess, .classes."""
    from unetkit.export.model_file import load_model as load

    return load(path)


def predict(config: PredictConfig) -> PredictResult:
    """Write one mask per input image at the image's size: PNG (0/255 binary, or a palette PNG of
    class indices), or for multi-label models and streamed images, a TIFF.

    Images larger than config.tile are predicted in overlapping, blended tiles; TIFF and .npy
    inputs above config.stream_pixels are streamed by rows into tiled TIFFs (inference/job.py).
    Optionally also <stem>_prob.tif (float32 probabilities), <stem>_overlay.png and a run-length
    CSV. The folder records the job in predict_args.json; re-running it finishes what was left.
    """
    return PredictionJob(config).run()


def evaluate(config: EvaluateConfig) -> EvaluateResult:
    """Score a model (.safetensors, or an ONNX export) on a labelled folder: data-set figures plus a
    per-image CSV. Under torchrun each rank scores its share and every rank gets the figures of all."""
    from tqdm import tqdm

    from unetkit.data.dataset import find_pairs
    from unetkit.inference.engine import open_predictor
    from unetkit.inference.scoring import accumulator_for, palette_for, scored_pairs
    from unetkit.metrics import MetricAccumulator
    from unetkit.runtime import progress_hidden

    predictor = open_predictor(config.model_path, config)
    distributed.join(predictor.device.type)
    pairs = find_pairs(config.data_dir)
    accumulator = accumulator_for(predictor.saved)
    mine = pairs[distributed.rank() :: distributed.world_size()]
    scored = scored_pairs(predictor, mine, accumulator, palette_for(predictor.saved, config.data_dir))
    rows = [item.row for item in tqdm(scored, total=len(mine), desc="evaluate", unit="img", disable=progress_hidden(),
                                      leave=False)]
    if distributed.launched():
        shares = distributed.all_gather((rows, accumulator))
        accumulator = MetricAccumulator.merged([share for _, share in shares])
        place = {pair.stem: i for i, pair in enumerate(pairs)}
        rows = sorted((row for share, _ in shares for row in share), key=lambda row: place[row["stem"]])
    csv_path = Path(config.csv_path) if config.csv_path else (
        Path(config.model_path).parent / f"evaluation-{Path(config.data_dir).resolve().name}.csv")
    if distributed.is_main():
        write_csv(rows, csv_path)
    metrics = accumulator.summary() | {"threshold": predictor.threshold}
    return EvaluateResult(metrics, csv_path)


def demo(out_dir: str | os.PathLike[str] = "runs/demo", *, n_train: int = 600, n_test: int = 200,
         time_budget_min: float = 2.5, epochs: int = 40, batch_size: int = 8, seed: int = 0) -> EvaluateResult:
    """The main job on the embedded default: synthetic data -> seed U-Net -> held-out scores and masks.

    Writes under `out_dir`: data/{train,test}, the run (model.safetensors, metrics.csv, curves.png,
    checkpoints/), evaluation.csv, overlays.png (held-out image / truth / prediction) and
    predictions/ (one mask per held-out image).
    """
    from unetkit.data.synthetic import generate_synthetic

    root = Path(out_dir)
    if (root / DEMO_MARKER).is_file():
        log.info("replacing the previous demo in %s", root)
        shutil.rmtree(root)
    elif root.exists() and any(root.iterdir()):
        raise UserError(f"{root}: folder exists and is not an earlier demo; choose another --out")
    make_dir(root)
    write_text(root / DEMO_MARKER, "written by unetkit demo; the next demo replaces this folder\n")
    log.info("generating the synthetic data set (%d training, %d held-out images)", n_train, n_test)
    train_dir = generate_synthetic(root / "data" / "train", n_train, seed=seed)
    test_dir = generate_synthetic(root / "data" / "test", n_test, seed=seed + 1000)
    # Batch 8 instead of the seed's 32: on 2 CPU cores it is faster per image and takes 4x more steps
    # in the demo's few minutes; the network is the seed's, unchanged.
    config = TrainConfig(out_dir=str(root), epochs=epochs, time_budget_min=time_budget_min, seed=seed,
                         batch_size=batch_size,
                         data=dataclasses.replace(TrainConfig().data, data_dir=str(train_dir)))
    result = train(config)
    evaluation = evaluate(EvaluateConfig(model_path=str(result.model_path), data_dir=str(test_dir),
                                         csv_path=str(root / "evaluation.csv")))
    predict(PredictConfig(model_path=str(result.model_path), input_path=str(test_dir / "images"),
                          out_dir=str(root / "predictions")))
    _demo_sheet(root, test_dir, count=6)
    return evaluation


def _demo_sheet(root: Path, test_dir: Path, count: int) -> None:
    import numpy as np

    from unetkit.data.dataset import find_pairs, load_pair
    from unetkit.data.io import read_array
    from unetkit.visualize import overlay_sheet

    pairs = find_pairs(test_dir)[:count]
    images, truths, preds = [], [], []
    for pair in pairs:
        image, truth = load_pair(pair, 1, 1)
        images.append(image)
        truths.append(truth)
        preds.append((read_array(root / "predictions" / f"{pair.stem}.png")[:, :, 0] > 0).astype(np.uint8))
    overlay_sheet(images, truths, preds, [p.stem for p in pairs], root / "overlays.png")
