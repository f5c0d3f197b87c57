"""The operations unetkit offers; the CLI only parses arguments into configs and calls one of these,
with the same names, so both doors agree. Each takes its config object or the same fields as keywords.

Each entry point imports the machinery it needs when called: `predict` with an ONNX model
must run where PyTorch is not installed, so nothing here imports torch at module level.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from unetkit import distributed
from unetkit.config import DataConfig, EvaluateConfig, ExportConfig, ImportConfig, PredictConfig, ReviewConfig, TrainConfig
from unetkit.errors import UserError
from unetkit.fileio import write_text
from unetkit.runtime import log

_Config = TypeVar("_Config", PredictConfig, EvaluateConfig, ExportConfig)

if TYPE_CHECKING:
    from unetkit.data.importers import ImportResult
    from unetkit.export.onnx import ExportResult
    from unetkit.inference.evaluation import EvaluateResult
    from unetkit.inference.in_memory import LoadedModel
    from unetkit.inference.job import PredictResult
    from unetkit.review.server import ReviewServer
    from unetkit.training.finish import TrainResult
    from unetkit.training.plan import Plan

__all__ = ["demo", "evaluate", "export", "load_model", "plan", "predict", "report", "resume", "review", "synth",
           "train", "train_config", "PredictResult", "import_annotations"]

DEMO_MARKER = ".unetkit-demo"


def __getattr__(name: str) -> Any:
    """`PredictResult` on first use: the prediction machinery loads when predicting, not with the CLI."""
    if name == "PredictResult":
        from unetkit.inference.job import PredictResult

        return PredictResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def train_config(data: str | os.PathLike[str] | TrainConfig | None = None, out: str | os.PathLike[str] | None = None,
                 *, recipe: str | None = None, time_budget: float | None = None,
                 config: str | os.PathLike[str] | dict[str, Any] | None = None, **fields: Any) -> TrainConfig:
    """The TrainConfig `train` with the same arguments would train: `unetkit train` resolves its
    flags through this very function, so a keyword and a flag mean the same.

    Precedence: keywords (and flags) > `config` (a YAML file's path, or its mapping) > the recipe
    and the model preset > the defaults. `fields` are config fields by name: `epochs=5`, sections
    as mappings (`optim={"lr": 1e-3}`) or dotted names (`**{"optim.lr": 1e-3}`). `data` may be a
    TrainConfig: a resolved one trains as it is; a hand-built one is resolved like a YAML file of
    the fields it changes from TrainConfig's defaults (so `TrainConfig(recipe="fast")` trains fast).
    """
    from unetkit.config import layer_from_fields, load_yaml
    from unetkit.models.registry import check_arch
    from unetkit.training.recipes import given_fields, is_resolved, resolve_train_config

    named = [(origin, name, os.fspath(value) if isinstance(value, os.PathLike) else value)
             for origin, name, value in (("data", "data.data_dir", data), ("out", "out_dir", out),
                                         ("recipe", "recipe", recipe), ("time_budget", "time_budget_min", time_budget))
             if value is not None and not isinstance(value, TrainConfig)]
    keywords = layer_from_fields([*named, *((name, name, value) for name, value in fields.items())])
    base: dict[str, Any] = {}
    if isinstance(data, TrainConfig):
        if is_resolved(data) and not keywords and config is None:
            return data
        base = given_fields(data)
    elif data is not None and not isinstance(data, (str, os.PathLike)):
        raise UserError(f"train: data must be a folder (str or path) or a TrainConfig, not {type(data).__name__}")
    if isinstance(config, (str, os.PathLike)):
        config = load_yaml(config)
    elif config is not None and not isinstance(config, dict):
        raise UserError(f"train: config must be a YAML file's path or a mapping, not {type(config).__name__}")
    resolved = resolve_train_config(base, config or {}, keywords)
    named_model = keywords.get("model")
    check_arch(resolved.model, given=named_model if isinstance(named_model, dict) else ())  # named: refused by name
    return resolved


def train(data: str | os.PathLike[str] | TrainConfig | None = None, out: str | os.PathLike[str] | None = None, *,
          recipe: str | None = None, time_budget: float | None = None,
          config: str | os.PathLike[str] | dict[str, Any] | None = None, resume: bool = False, **fields: Any) -> TrainResult:
    """Train a network on the labelled folder `data` into the run folder `out`, then write the run report.

    Resolved as `unetkit train` resolves its flags (see `train_config`): `unetkit.train("DIR",
    out="runs/x", recipe="fast", time_budget=10, **{"optim.lr": 1e-3})` is `unetkit train --data DIR
    --out runs/x --recipe fast --time-budget 10 --set optim.lr=1e-3`. With `resume`, continue the run
    in `out` (`unetkit.resume` builds that config from the stored one). With folds = K, trains K
    folds and writes one ensemble model file.
    """
    return _train_resolved(train_config(data, out, recipe=recipe, time_budget=time_budget, config=config, **fields),
                           resume=resume)


def _train_resolved(config: TrainConfig, *, resume: bool) -> TrainResult:
    from unetkit.training.runner import run_training

    result = run_training(config, resume=resume)
    if distributed.is_main():
        from unetkit.report import write_reports

        log.info("run report: %s", write_reports(result.run_dir, device=config.runtime.device))
        if config.runtime.track == "mlflow":
            from unetkit.tracking import finish_training

            finish_training(result.run_dir, result.val_metrics, result.epochs_done)
        for warning in result.warnings:  # the last lines: a useless model must not pass unnoticed
            log.warning("warning: %s", warning)
    distributed.barrier()  # the ranks return together, after rank 0 has written the report
    return result


def resume(run_dir: str | os.PathLike[str], *layers: dict[str, Any],
           config: str | os.PathLike[str] | dict[str, Any] | None = None, **fields: Any) -> TrainResult:
    """Continue the killed or finished run in `run_dir` from its last checkpoint. What may change (more
    epochs, a longer time budget) is given as in `train`: a `config` YAML or mapping, then fields by name
    (`epochs=40`); `layers` are further mappings of fields."""
    from unetkit.config import layer_from_fields, load_yaml
    from unetkit.training.runner import resumed_config

    if isinstance(config, (str, os.PathLike)):
        config = load_yaml(config)
    keywords = layer_from_fields((name, name, value) for name, value in fields.items())
    if any(layer.get("init_model") for layer in (*layers, config or {}, keywords)):
        raise UserError("--init starts a new run from a model file and --resume continues one: give one of them")
    resolved = resumed_config(run_dir, *layers, config or {}, keywords)
    if Path(resolved.out_dir) != Path(run_dir):
        resolved = dataclasses.replace(resolved, out_dir=str(run_dir))
    return _train_resolved(resolved, resume=True)


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """A unetkit model file (safetensors + metadata) on the CPU, in eval mode: `.predict(images)` gives
    masks and `.probabilities(images)` maps of NumPy arrays, as `unetkit predict` would; `.net` is
    the plain `nn.Module` (logits), with `.preprocess`, `.threshold`, `.postprocess`, `.classes`."""
    from unetkit.export.model_file import load_model as load
    from unetkit.inference.in_memory import LoadedModel

    return LoadedModel(load(path))


def _options(cls: type[_Config], given: Any, required: dict[str, Any], options: dict[str, Any], door: str) -> _Config:
    """A config of `cls` from a config object, or from the required arguments and option keywords;
    a wrong kind of argument or an unknown option is one line naming it."""
    if isinstance(given, cls):
        if options or any(value is not None for value in list(required.values())[1:]):
            raise UserError(f"{door}: give a {cls.__name__} or arguments and options, not both")
        return given
    if given is not None and not isinstance(given, (str, os.PathLike)):
        raise UserError(f"{door}: the first argument must be a {cls.__name__} or a path, not {type(given).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    if unknown := [name for name in [*required, *options] if name not in known]:
        raise UserError(f"{door}: unknown option {unknown[0]} (options: {', '.join(sorted(known))})")
    if missing := [name for name, value in required.items() if value is None]:
        raise UserError(f"{door}: {missing[0]} is required")
    return cls(**{k: str(v) if isinstance(v, os.PathLike) else v for k, v in required.items()}, **options)


def predict(model: str | os.PathLike[str] | PredictConfig | None = None, input: str | os.PathLike[str] | None = None,
            out: str | os.PathLike[str] | None = None, **options: Any) -> PredictResult:
    """Write one mask per input image at the image's size: PNG (0/255 binary, or a palette PNG of
    class indices), or for multi-label models and streamed images, a TIFF.

    `unetkit.predict("model.safetensors", "images/", "masks/", tta="flips")` is `unetkit predict
    --model model.safetensors --input images/ --out masks/ --tta flips`; a PredictConfig works too.
    Images larger than the tile are predicted in overlapping, blended tiles; TIFF and .npy inputs
    above stream_pixels are streamed by rows into tiled TIFFs (inference/job.py). The folder records
    the job in predict_args.json; re-running it finishes what was left.
    """
    given = {"input_path": str(input)} if input is not None else {}  # or images by image_name / pairs
    config = _options(PredictConfig, model, {"model_path": model, "out_dir": out}, {**given, **options}, "predict")
    from unetkit.inference.job import PredictionJob

    return PredictionJob(config).run()


def evaluate(model: str | os.PathLike[str] | EvaluateConfig | None = None, data: str | os.PathLike[str] | None = None,
             **options: Any) -> EvaluateResult:
    """Score a model (.safetensors, or an ONNX export) on a labelled folder: data-set figures plus a
    per-image CSV (inference/evaluation.py). `unetkit.evaluate("model.safetensors", "DIR", tta="d4")`
    or an EvaluateConfig. Under torchrun every rank gets the figures of all."""
    from unetkit.inference.evaluation import run_evaluation

    if data is None and not isinstance(model, EvaluateConfig) and not (options.get("images_dir") or options.get("pairs")):
        raise UserError("evaluate: data_dir is required (or images_dir and masks_dir, or pairs)")
    given = {"data_dir": str(data)} if data is not None else {}
    return run_evaluation(_options(EvaluateConfig, model, {"model_path": model}, {**given, **options}, "evaluate"))


def export(model: str | os.PathLike[str] | ExportConfig | None = None, out: str | os.PathLike[str] | None = None,
           **options: Any) -> ExportResult:
    """Write the model as ONNX (export/onnx.py) and measure onnxruntime against PyTorch on it:
    `unetkit.export("model.safetensors", "model.onnx", opset=17)` or an ExportConfig."""
    from unetkit.export.onnx import export_model

    return export_model(_options(ExportConfig, model, {"model_path": model, "out_path": out}, options, "export"))


def report(run_dir: str | os.PathLike[str], *, device: str = "auto") -> Path:
    """(Re)write RUN_DIR/report.html (and each fold's page of a --folds run) from the run folder."""
    from unetkit.report import write_reports

    return write_reports(run_dir, device=device)


def plan(data_dir: str | os.PathLike[str], overrides: dict[str, Any] | None = None, *, device: str = "auto",
         num_classes: int | None = None, layout: dict[str, str] | None = None) -> Plan:
    """Fingerprint the labelled folder `data_dir` (bounded memory) and choose how to train on it for `device`:
    the Plan, with a why per choice and the fingerprint; nothing is written. `overrides` set plan fields
    (unknown names are a UserError); `layout`: the DataConfig fields images_dir, masks_dir, image_name,
    mask_name, pairs."""
    from unetkit.data.fingerprint import fingerprint
    from unetkit.data.pairing import DataSource
    from unetkit.training.plan import make_plan

    source = DataSource(data_dir=str(data_dir), **(layout or {}))
    return make_plan(fingerprint(source, num_classes=num_classes), device, overrides)


def import_annotations(format: str | ImportConfig | None = None, annotations: str | os.PathLike[str] | None = None,
                       images: str | os.PathLike[str] | None = None, out: str | os.PathLike[str] | None = None,
                       **options: Any) -> ImportResult:
    """Turn an annotation-tool export (COCO, CVAT, LabelMe, Label Studio, VOC) into a labelled folder that
    `train` reads: images/, masks/ (class indices) and classes.yaml (data/importers/).
    `unetkit.import_annotations("coco", "instances.json", "photos/", "data/", classes=("cat",))` or an ImportConfig."""
    from unetkit.data.importers import import_annotations as run_import

    return run_import(_options(ImportConfig, format, {"format": format, "annotations": annotations,
                                                      "images_dir": images, "out_dir": out}, options, "import"))


def synth(out_dir: str | os.PathLike[str], n: int = 600, *, size: int = 101, seed: int = 0) -> Path:
    """Write the embedded synthetic data set (out_dir/images, out_dir/masks); return out_dir."""
    from unetkit.data.synthetic import generate_synthetic

    return generate_synthetic(out_dir, n, size=size, seed=seed)


def demo(out_dir: str | os.PathLike[str] = "runs/demo", *, n_train: int = 600, n_test: int = 200,
         time_budget_min: float = 2.5, epochs: int = 40, batch_size: int = 8, seed: int = 0) -> EvaluateResult:
    """The main job on the embedded default: synthetic data -> seed U-Net -> held-out scores and masks.
    Writes under `out_dir`: data/{train,test}, the run, evaluation.csv, overlays.png (held-out image /
    truth / prediction) and predictions/ (one mask per held-out image)."""
    from unetkit.data.dataset import find_pairs, load_pair
    from unetkit.data.io import read_array
    from unetkit.visualize import overlay_sheet

    root = Path(out_dir)
    if (root / DEMO_MARKER).is_file():
        log.info("replacing the previous demo in %s", root)
        shutil.rmtree(root)
    elif root.exists() and any(root.iterdir()):
        raise UserError(f"{root}: folder exists and is not an earlier demo; choose another --out")
    write_text(root / DEMO_MARKER, "written by unetkit demo; the next demo replaces this folder\n")
    log.info("generating the synthetic data set (%d training, %d held-out images)", n_train, n_test)
    train_dir = synth(root / "data" / "train", n_train, seed=seed)
    test_dir = synth(root / "data" / "test", n_test, seed=seed + 1000)
    log.info("demo: training the seed U-Net, the TGS kernel's model and recipe (on your own data `unetkit train` "
             "uses --recipe best unless told otherwise)")
    # Batch 8 instead of the seed's 32: on 2 CPU cores it is faster per image and takes 4x more steps
    # in the demo's few minutes; the network is the seed's, unchanged.
    result = train(TrainConfig(out_dir=str(root), epochs=epochs, time_budget_min=time_budget_min, seed=seed,
                               batch_size=batch_size, data=DataConfig(data_dir=str(train_dir))))
    evaluation = evaluate(EvaluateConfig(model_path=str(result.model_path), data_dir=str(test_dir),
                                         csv_path=str(root / "evaluation.csv")))
    predict(PredictConfig(model_path=str(result.model_path), input_path=str(test_dir / "images"),
                          out_dir=str(root / "predictions")))
    pairs = find_pairs(test_dir)[:6]
    images, truths = zip(*(load_pair(pair, 1, 1) for pair in pairs))
    preds = [(read_array(root / "predictions" / f"{pair.stem}.png")[:, :, 0] > 0).astype("uint8") for pair in pairs]
    overlay_sheet(images, truths, preds, [p.stem for p in pairs], root / "overlays.png")
    return evaluation


def review(config: ReviewConfig) -> ReviewServer:
    """Predict every image of config.images_dir once (cached under config.out_dir) and serve the review
    page on config.host:config.port in a background thread: `.url` (with its token), `.wait()`, `.stop()`.
    Needs the `review` extra (Starlette and uvicorn); without it, one line naming the install command."""
    try:
        from unetkit.review.server import ReviewServer
    except ModuleNotFoundError as exc:
        if exc.name not in ("starlette", "uvicorn") and not str(exc.name).startswith(("starlette.", "uvicorn.")):
            raise
        raise UserError("unetkit review needs a web server: pip install 'unetkit[review]' (Starlette and uvicorn)") from None
    return ReviewServer(config)
