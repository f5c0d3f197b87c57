"""The operations unetkit offers; the CLI only parses arguments into configs and calls one of these.

train(TrainConfig) -> TrainResult, resume(run_dir, *layers) -> TrainResult, predict(PredictConfig)
-> PredictResult, evaluate(EvaluateConfig) -> EvaluateResult, export(ExportConfig) -> ExportResult,
report(run_dir) -> Path, synth(out_dir, ...) -> Path, load_model(path) -> SavedModel, demo(...).
Every user mistake surfaces as `UserError` before anything is written where possible,
and every file is written atomically.

Each entry point imports the machinery it needs when called: `predict` with an ONNX model
must run where PyTorch is not installed, so nothing here imports torch at module level.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetkit import distributed
from unetkit.config import EvaluateConfig, ExportConfig, PredictConfig, ReviewConfig, TrainConfig
from unetkit.errors import UserError
from unetkit.fileio import make_dir, write_text
from unetkit.inference.job import PredictionJob, PredictResult
from unetkit.runtime import log

if TYPE_CHECKING:
    from unetkit.export.model_file import SavedModel
    from unetkit.export.onnx import ExportResult
    from unetkit.inference.evaluation import EvaluateResult
    from unetkit.review.server import ReviewServer
    from unetkit.training.loop import TrainResult
    from unetkit.training.plan import Plan

__all__ = ["demo", "evaluate", "export", "load_model", "plan", "predict", "report", "resume", "review", "synth",
           "train", "PredictResult"]

DEMO_MARKER = ".unetkit-demo"


def train(config: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Train a network on config.data.data_dir into config.out_dir, then write the run report.

    With `resume`, continue the run in config.out_dir (`resume()` builds that config from the
    stored one); the architecture must stay the same. With config.folds = K, trains K folds and
    writes one ensemble model file (see training/runner.py).
    """
    from unetkit.report import write_reports
    from unetkit.training.runner import run_training

    result = run_training(config, resume=resume)
    if distributed.is_main():
        log.info("run report: %s", write_reports(result.run_dir, device=config.runtime.device))
    distributed.barrier()  # the ranks return together, after rank 0 has written the report
    return result


def resume(run_dir: str | os.PathLike[str], *layers: dict[str, Any]) -> TrainResult:
    """Continue the killed or finished run in `run_dir` from its last checkpoint.

    `layers` (plain data: a YAML file's fields, then the flags') change what may change (more
    epochs, a longer time budget); they lie over the run's stored config.yaml.
    """
    from unetkit.training.runner import resumed_config

    config = resumed_config(run_dir, *layers)
    if Path(config.out_dir) != Path(run_dir):
        config = dataclasses.replace(config, out_dir=str(run_dir))
    return train(config, resume=True)


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
    per-image CSV (inference/evaluation.py). Under torchrun every rank gets the figures of all."""
    from unetkit.inference.evaluation import run_evaluation

    return run_evaluation(config)


def export(config: ExportConfig) -> ExportResult:
    """Write the model as ONNX (export/onnx.py) and measure onnxruntime against PyTorch on it."""
    from unetkit.export.onnx import export_model

    return export_model(config)


def report(run_dir: str | os.PathLike[str], *, device: str = "auto") -> Path:
    """(Re)write RUN_DIR/report.html (and each fold's page of a --folds run) from the run folder."""
    from unetkit.report import write_reports

    return write_reports(run_dir, device=device)


def plan(data_dir: str | os.PathLike[str], overrides: dict[str, Any] | None = None, *, device: str = "auto",
         num_classes: int | None = None) -> Plan:
    """Fingerprint the labelled folder `data_dir` (data/fingerprint.py, bounded memory) and choose how to
    train on it for `device` (training/plan.py): the Plan, with a why per choice and the fingerprint.
    `overrides` set plan fields (unknown names are a UserError); nothing is written."""
    from unetkit.data.fingerprint import fingerprint
    from unetkit.training.plan import make_plan

    return make_plan(fingerprint(data_dir, num_classes=num_classes), device, overrides)


def synth(out_dir: str | os.PathLike[str], n: int = 600, *, size: int = 101, seed: int = 0) -> Path:
    """Write the embedded synthetic data set (out_dir/images, out_dir/masks); return out_dir."""
    from unetkit.data.synthetic import generate_synthetic

    return generate_synthetic(out_dir, n, size=size, seed=seed)


def demo(out_dir: str | os.PathLike[str] = "runs/demo", *, n_train: int = 600, n_test: int = 200,
         time_budget_min: float = 2.5, epochs: int = 40, batch_size: int = 8, seed: int = 0) -> EvaluateResult:
    """The main job on the embedded default: synthetic data -> seed U-Net -> held-out scores and masks.

    Writes under `out_dir`: data/{train,test}, the run (model.safetensors, metrics.csv, curves.png,
    checkpoints/), evaluation.csv, overlays.png (held-out image / truth / prediction) and
    predictions/ (one mask per held-out image).
    """
    root = Path(out_dir)
    if (root / DEMO_MARKER).is_file():
        log.info("replacing the previous demo in %s", root)
        shutil.rmtree(root)
    elif root.exists() and any(root.iterdir()):
        raise UserError(f"{root}: folder exists and is not an earlier demo; choose another --out")
    make_dir(root)
    write_text(root / DEMO_MARKER, "written by unetkit demo; the next demo replaces this folder\n")
    log.info("generating the synthetic data set (%d training, %d held-out images)", n_train, n_test)
    train_dir = synth(root / "data" / "train", n_train, seed=seed)
    test_dir = synth(root / "data" / "test", n_test, seed=seed + 1000)
    # Batch 8 instead of the seed's 32: on 2 CPU cores it is faster per image and takes 4x more steps
    # in the demo's few minutes; the network is the seed's, unchanged.
    config = TrainConfig(out_dir=str(root), epochs=epochs, time_budget_min=time_budget_min, seed=seed,
                         batch_size=batch_size, data=dataclasses.replace(TrainConfig().data, data_dir=str(train_dir)))
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


def review(config: ReviewConfig) -> ReviewServer:
    """Predict every image of config.images_dir once (cached under config.out_dir) and serve the review
    page on config.host:config.port in a background thread: `.url` (with its token), `.wait()`, `.stop()`.

    Needs the `review` extra (Starlette and uvicorn); without it, one line naming the install command.
    """
    try:
        from unetkit.review.server import ReviewServer
    except ModuleNotFoundError as exc:
        if exc.name not in ("starlette", "uvicorn") and not str(exc.name).startswith(("starlette.", "uvicorn.")):
            raise
        raise UserError("unetkit review needs a web server: pip install 'unetkit[review]' (Starlette and uvicorn)") from None
    return ReviewServer(config)
