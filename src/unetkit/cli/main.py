"""Command line: each subcommand parses its flags into a config and calls one API function.

Only `UserError` is caught, and reduced to one line on stderr with exit code 2; any
other exception is a bug and keeps its traceback (exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import logging
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from unetkit import api, config, distributed
from unetkit.data.importers import FORMATS
from unetkit.errors import UserError
from unetkit.inference.tiling import BLENDS
from unetkit.inference.tta import TTA_MODES
from unetkit.measures import is_boundary, measure_names_help
from unetkit.tracking import flat_params

T = TypeVar("T")


class LazyChoices:
    """argparse choices read from a registry when a value is checked: the registries of training
    options import torch, which `unetkit predict --model model.onnx` must never do (so the flags
    using these also name a metavar: argparse would otherwise list the choices while building)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __iter__(self) -> Iterator[str]:  # `in`, which argparse asks, iterates too
        return iter(getattr(importlib.import_module(self.module), self.name))


# Each train flag and the config field it sets (argparse dest -> dotted field).
TRAIN_FLAGS = {"out": "out_dir", "recipe": "recipe", "preset": "preset", "epochs": "epochs", "batch_size": "batch_size",
               "monitor": "monitor", "time_budget": "time_budget_min", "seed": "seed", "folds": "folds", "fold": "fold",
               "in_channels": "model.in_channels", "num_classes": "model.num_classes", "data": "data.data_dir",
               "val_fraction": "data.val_fraction", "size_policy": "data.size_policy", "augment": "data.augment",
               "patch_size": "data.patch_size", "loss": "loss.name", "lr": "optim.lr", "device": "runtime.device",
               "compile": "runtime.compile", "images": "data.images_dir", "masks": "data.masks_dir",
               "image_name": "data.image_name", "mask_name": "data.mask_name", "pairs": "data.pairs",
               "fov": "data.fov_dir", "track": "runtime.track", "init": "init_model"}


def train_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The train flags that were given and every --set, as config fields by dotted name: the
    keywords of `unetkit.train`. A --set that contradicts a flag (or another --set) is refused."""
    named = [(f"--{dest.replace('_', '-')}", path, getattr(args, dest)) for dest, path in TRAIN_FLAGS.items()
             if getattr(args, dest) is not None]
    named += [(f"--set {name}", name, value) for name, value in map(_assignment, args.set or [])]
    config.layer_from_fields(named)  # only to refuse contradictions, naming both flags
    return {name: value for _, name, value in named}


def _assignment(assignment: str) -> tuple[str, Any]:
    """--set a.b.c=VALUE as (name, VALUE read as YAML)."""
    key, equals, text = assignment.partition("=")
    if not key or not equals:
        raise UserError(f"--set {assignment}: expected FIELD=VALUE (e.g. --set model.batch_norm=true)")
    return key, config.parse_yaml(text, f"--set {key}") if text else ""


def _config_fields_help() -> str:
    """Every config field with its default and its help (the field's metadata), by section."""
    defaults = config.TrainConfig()
    sections = [("", defaults), *((f"{name}.", v) for name, v in vars(defaults).items() if dataclasses.is_dataclass(v))]
    lines = ["config fields (YAML keys, sections nest; --set SECTION.FIELD=VALUE):"]
    for prefix, section in sections:
        for spec in dataclasses.fields(section):
            value, text = getattr(section, spec.name), spec.metadata.get("help")
            if not dataclasses.is_dataclass(value):  # a section: listed under its own prefix
                lines.append(f"  {prefix}{spec.name} = {json.dumps(value)}" + (f"  ({text})" if text else ""))
    return "\n".join(lines)


def _train(args: argparse.Namespace) -> None:
    result = (api.resume(args.out, config=args.config, **train_fields(args)) if args.resume
              else api.train(config=args.config, **train_fields(args)))
    if not distributed.is_main():
        return
    threshold = f"threshold {result.threshold:.2f}, " if result.threshold is not None else ""
    print(f"model: {result.model_path}  ({threshold}best epoch {result.best_epoch} of {result.epochs_done}, "
          f"{result.stop_reason})")
    tgs = f" TGS mAP {result.val_metrics['tgs_map']:.4f}" if result.binary else ""
    print(f"validation IoU {result.val_metrics['iou']:.4f} Dice {result.val_metrics['dice']:.4f}{tgs}")
    if result.warnings:
        print(f"unetkit: the run ended with {len(result.warnings)} warning(s), above and at the top of "
              f"{result.run_dir / 'report.html'}", file=sys.stderr)


def _predict(args: argparse.Namespace) -> None:
    result = api.predict(_config(config.PredictConfig, args, stream_pixels=max(1, int(args.stream_above * 1e6))))
    if result.rle_path:
        logging.getLogger("unetkit").info("run-length CSV: %s", result.rle_path)


# The flags of predict, evaluate, review, export and import named otherwise than the config fields they set.
FIELD_FLAGS = {"model_path": "model", "input_path": "input", "out_dir": "out", "out_path": "out", "data_dir": "data",
               "images_dir": "images", "masks_dir": "masks", "csv_path": "csv", "fov_dir": "fov",
               "resamples": "bootstrap", "seed": "bootstrap_seed"}


def _config(cls: type[T], args: argparse.Namespace, **computed: Any) -> T:
    """`cls` from the flags given (a flag left out, None, leaves the field's default) and `computed` fields."""
    given = {spec.name: getattr(args, FIELD_FLAGS.get(spec.name, spec.name), None) for spec in dataclasses.fields(cls)}
    return cls(**{name: value for name, value in given.items() if value is not None} | computed)


def _evaluate(args: argparse.Namespace) -> None:
    result = api.evaluate(_config(config.EvaluateConfig, args))
    if not distributed.is_main():
        return
    m = result.metrics
    first = ("iou", "dice", "pixel_accuracy", "tgs_map", "n_images")
    print(json.dumps({k: m[k] for k in first} | m) if args.json else _evaluation_line(m, args.bootstrap))
    logging.getLogger("unetkit").info("per-image scores: %s", result.csv_path)


FIGURE_LABELS = {"iou": "IoU", "dice": "Dice", "tgs_map": "TGS mAP", "hd95": "HD95", "assd": "ASSD", "auc": "AUC"}


def _evaluation_line(m: dict[str, Any], resamples: int) -> str:
    """The summary line: each chosen figure with its 95% interval [low, high], pixel accuracy, threshold;
    distances followed by their unit (HD95 3.1000 [2.5000, 3.9000] mm) and NSD's tolerance with it (NSD@2mm)."""
    intervals = m.get("intervals") or {}
    unit = m.get("distance_unit", "px")
    parts = []
    for name in m.get("measures") or ("iou", "dice", "tgs_map"):
        if name == "tgs_map" and "class_iou" in m:  # several classes or labels: no TGS
            continue
        low_high = intervals.get(name)
        label = FIGURE_LABELS.get(name, name.upper()) + (unit if name.startswith("nsd@") else "")
        part = f"{label} {m[name]:.4f}" + (f" [{low_high[0]:.4f}, {low_high[1]:.4f}]" if low_high else "")
        parts.append(part + (f" {unit}" if is_boundary(name) and not name.startswith("nsd@") else ""))
    line = f"{m['n_images']} images  " + "  ".join(parts) + f"  pixel accuracy {m['pixel_accuracy']:.4f}"
    line += f"  (threshold {m['threshold']:.2f})" if m.get("threshold") is not None else ""
    return line + (f"; [95% interval over images, {resamples} bootstrap resamples]" if intervals else "")


def _export(args: argparse.Namespace) -> None:
    result = api.export(_config(config.ExportConfig, args))
    print(f"{result.path}: written; onnxruntime vs PyTorch, max abs difference of probabilities {result.max_difference:.2e}")


def _report(args: argparse.Namespace) -> None:
    print(api.report(args.run_dir, device=args.device))


def _demo(args: argparse.Namespace) -> None:
    result = api.demo(args.out, time_budget_min=args.time_budget, seed=args.seed)
    print(f"held-out IoU {result.metrics['iou']:.4f} Dice {result.metrics['dice']:.4f}")


def _synth(args: argparse.Namespace) -> None:
    out = api.synth(args.out, args.n, size=args.size, seed=args.seed)
    print(f"{args.n} synthetic image/mask pairs written to {out / 'images'} and {out / 'masks'}")


def _plan(args: argparse.Namespace) -> None:
    overrides = config.layer_from_fields((f"--set {name}", name, value) for name, value in map(_assignment, args.set or []))
    layout = {name: value for name in ("images_dir", "masks_dir", "image_name", "mask_name", "pairs")
              if (value := getattr(args, FIELD_FLAGS.get(name, name))) is not None}
    result = api.plan(args.data or "", overrides, device=args.device, num_classes=args.num_classes, layout=layout)
    if args.json:
        print(json.dumps(result.to_dict()))
        return
    print(_describe_fingerprint(result.fingerprint or {}))
    print("plan:")
    for name, value in result.to_dict().items():
        if name not in ("why", "fingerprint"):
            print(f"  {name:<17}{value}")
            if args.explain:
                print(f"  {'':<17}why: {result.why.get(name, '')}")


def _describe_fingerprint(fp: dict[str, Any]) -> str:
    """The fingerprint as a few lines of text (plan --json prints all of it)."""
    (h0, w0), (h1, w1) = fp["size_min"], fp["size_max"]
    sizes = f"{h1}x{w1} (all one size)" if fp["same_size"] else f"{h0}x{w0} to {h1}x{w1} (median {fp['size_median']})"
    kind = {1: "gray", 3: "colour", 4: "colour + alpha"}.get(fp["channels"], "")
    share = " / ".join(f"{v:.3f}" for v in fp["class_share"])
    lines = [f"fingerprint of {fp['data_dir']}: {fp['n_images']} images, {sizes}, {fp['channels']} channel(s) {kind}, "
             f"{', '.join(fp['dtypes'])}",
             f"  intensity per channel: mean {fp['mean']}, std {fp['std']}, 0.5% {fp['percentile_00_5']}, "
             f"99.5% {fp['percentile_99_5']} ({fp['sampled_pixels']} sampled pixels)",
             f"  classes: {'binary' if fp['num_classes'] == 1 else fp['num_classes']}; pixel share {share}; "
             f"{fp['foreground_image_share']:.0%} of images hold foreground"]
    if fp["foreground_width"] is not None:
        lines.append(f"  foreground components: median width {fp['foreground_width']:.1f} px, extent median "
                     f"{fp['object_size_median']:.0f} px, 90th percentile {fp['object_size_p90']:.0f} px")
    return "\n".join(lines)


def _review(args: argparse.Namespace) -> None:
    server = api.review(_config(config.ReviewConfig, args))
    print(f"review {len(server.session.images)} images: open {server.url}  (Ctrl-C stops; saved masks are kept)", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:  # the way to stop a server: say what is kept, exit 0
        print(f"review stopped; {len(server.session.store.saved())} reviewed masks in {args.out}/masks", flush=True)


def _overwrite_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what} (inputs are never replaced)")


def _megapixels(text: str) -> float:
    with contextlib.suppress(ValueError):
        if math.isfinite(value := float(text)) and value >= 0:  # 0: stream every TIFF and .npy input
            return value
    raise argparse.ArgumentTypeError(f"{text!r} must be a number of megapixels >= 0")


def _common_inference_flags(parser: argparse.ArgumentParser) -> None:
    """A flag left out is None, which leaves the InferenceOptions field at its default (see _config)."""
    parser.add_argument("--model", required=True, help="model file (model.safetensors)")
    parser.add_argument("--threshold", type=float, help="binary models: probability threshold (default: stored in the model)")
    parser.add_argument("--batch-size", type=int, help="images or tiles per forward pass (default 16)")
    parser.add_argument("--device", choices=config.DEVICES)
    parser.add_argument("--tile", type=int, help="images larger than this (pixels, either side) are predicted in overlapping "
                        "tiles of this size (default: the model's planned tile, the patch size of patch training; else 256)")
    parser.add_argument("--overlap", type=float, help="share of a tile overlapping the next (default 0.25)")
    parser.add_argument("--blend", choices=BLENDS, help="weights of overlapping tiles: gaussian (sigma = tile/8, default) "
                        "or constant")
    parser.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation: average over the left-right mirror (hflip: "
                        "images with an up and down, like TGS), the 4 flips, or the 8 symmetries of the square (d4)")
    parser.add_argument("--precision", choices=config.PRECISIONS, help="auto (default): bf16 on CUDA GPUs that support it, "
                        "fp32 otherwise; bf16 on a CPU with AVX512-BF16/AMX is faster, probabilities within a few hundredths")


def layout_flags(parser: argparse.ArgumentParser, masks: bool = True) -> None:
    """Where images and masks are when not DIR/images + DIR/masks (data/pairing.py); predict takes the image side."""
    if masks:
        parser.add_argument("--images", help="the images' folder (default: DIR/images)")
        parser.add_argument("--masks", help="the masks' folder (default: DIR/masks or DIR/labels)")
    parser.add_argument("--image-name", metavar="PATTERN", help="how an image's file name holds its id, e.g. "
                        "'{id}_training.tif' (* matches any text; default '{id}.*')")
    if masks:
        parser.add_argument("--mask-name", metavar="PATTERN", help="its mask's file name, e.g. '{id}_manual1.gif' "
                            "(default '{id}.*' or '{id}_mask.*')")
    parser.add_argument("--pairs", metavar="CSV", help="a CSV with columns image,mask (paths relative to it)"
                        + ("" if masks else "; its image column is predicted"))


class _TrainHelp(argparse.RawDescriptionHelpFormatter):
    """`train --help` ends with every config field and what each recipe sets. The recipes live with the training code,
    which imports torch: they are read when the help is shown, not when a parser is built (predicting through ONNX builds one)."""

    EPILOG = "@config-fields-and-recipes"

    def _format_text(self, text: str) -> str:
        if text == self.EPILOG:
            from unetkit.training.recipes import BEST_BY_DEVICE, RECIPES

            sets = {name: ", ".join(f"{k}={v}" for k, v in flat_params(layer).items()) or "the defaults above"
                    for name, layer in RECIPES.items()}
            sets["best"] = "; ".join(f"on {'a GPU' if device == 'cuda' else 'the CPU'} {name}"
                                     for device, name in BEST_BY_DEVICE.items())
            recipes = "".join(f"  {name}: {text}\n" for name, text in sets.items())
            return _config_fields_help() + "\nrecipes (what each sets over the defaults):\n" + recipes
        return super()._format_text(text)


def make_parser() -> argparse.ArgumentParser:
    quiet = argparse.ArgumentParser(add_help=False)  # -q before and after the subcommand (unetkit train -q ...)
    quiet.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only warnings and results")
    parser = argparse.ArgumentParser(prog="unetkit", description="U-Net semantic segmentation: train, evaluate, predict.",
                                     parents=[quiet])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, run: Callable[[argparse.Namespace], None], **options: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[quiet], **options)
        sub.set_defaults(run=run)
        return sub

    train = command(
        "train", _train, help="train a U-Net on DIR/images + DIR/masks", formatter_class=_TrainHelp,
        description="Train a U-Net. Precedence: flags and --set > --config YAML > recipe and preset > defaults.",
        epilog=_TrainHelp.EPILOG)
    train.add_argument("--data", help="folder with images/ and masks/ (matched by file stem); required, except "
                       "with --images/--masks, --pairs, --resume or a --config that names data.data_dir")
    layout_flags(train)
    train.add_argument("--out", required=True, help="run folder: model.safetensors, metrics.csv, curves.png, checkpoints/")
    train.add_argument("--config", help="YAML file of config fields (sections model:, data:, loss:, optim:, ... nest)")
    train.add_argument("--recipe", choices=LazyChoices("unetkit.training.recipes", "RECIPES"), metavar="RECIPE",
                       help="training recipe: best (default: the strongest for a time budget on the device that trains: on a "
                       "CPU best-cpu, chosen by benchmarks/quality.py; on a GPU winners), seed (the 2015 TGS kernel's recipe, "
                       "exactly), fast (the seed's layers tuned for a time budget), winners (an encoder U-Net with the TGS "
                       "winners' training) or best-cpu (fast at half the width, without dropout, with an average of the weights)")
    train.add_argument("--preset", choices=LazyChoices("unetkit.models.registry", "PRESETS"), metavar="PRESET",
                       help="model preset: seed (default), seed-bn, small")
    train.add_argument("--augment", choices=LazyChoices("unetkit.data.augment", "PRESET_NAMES"), metavar="AUGMENT",
                       help="augmentation preset: none, seed (horizontal flips), flips (and vertical), d4 (and 90-degree "
                       "rotations), strong, or auto (the plan's symmetries from the masks; best's default)")
    train.add_argument("--set", action="append", metavar="FIELD=VALUE",
                       help="any config field below, e.g. --set schedule.name=cosine --set model.batch_norm=true")
    train.add_argument("--epochs", type=int, help="maximum epochs (--recipe seed: 200, early stopping usually ends sooner; other "
                       "recipes: as many as the time budget allows)")
    train.add_argument("--time-budget", type=float, metavar="MINUTES", help="stop cleanly after this much training time")
    train.add_argument("--seed", type=int, help="seed for the split, initialisation, order and flips (default 0)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--init", metavar="MODEL", help="fine-tune: start from this model file's weights, normalisation and "
                       "training config (the architecture must stay the same), e.g. on the masks corrected with `unetkit review`")
    train.add_argument("--folds", type=int, metavar="K", help="K-fold cross-validation: out-of-fold score and one "
                       "ensemble model file (the time budget is shared by the folds)")
    train.add_argument("--fold", type=int, metavar="I", help="with --folds: train only fold I (0-based)")
    train.add_argument("--batch-size", type=int, help="images per step (default: the recipe's, listed below)")
    train.add_argument("--lr", type=float, help="learning rate, optim.lr (default: the recipe's, listed below)")
    train.add_argument("--loss", choices=LazyChoices("unetkit.training.losses", "LOSSES"), metavar="LOSS",
                       help="bce (default), bce_dice, dice, focal, tversky, lovasz, lovasz_elu, bce_lovasz, focal_dice, "
                       "weighted_ce")
    train.add_argument("--monitor", metavar="MONITOR", help=f"value for early stopping and the best checkpoint: "
                       f"{', '.join(config.MONITORS)}, or val_NAME of a val_metrics figure (val_hd95: lower is better), "
                       "or auto (the plan's: TGS mAP for data like TGS, else Dice, mean IoU for classes; best's default)")
    train.add_argument("--in-channels", type=int, help="image channels (1 gray, 3 RGB, 4); default: detected from "
                       "the first images (a gray picture saved as RGB counts as gray)")
    train.add_argument("--num-classes", type=int, help="1 = binary (sigmoid); >1 = class-index masks (softmax)")
    train.add_argument("--val-fraction", type=float, help="share held out for validation (default 0.2)")
    train.add_argument("--size-policy", choices=config.SIZE_POLICIES, help="pad (default), resize to data.resize_to, "
                       "or pad_crop (train on random data.crop windows of images padded to data.pad_to)")
    train.add_argument("--patch-size", type=int, metavar="N", help="train on random N x N patches (data.patch_size); 0: "
                       "whole images; default: the plan's (patches for mixed sizes or sides over 384; see `unetkit plan`)")
    train.add_argument("--device", choices=config.DEVICES)
    train.add_argument("--compile", action="store_const", const=True, help="torch.compile the network (GPUs; "
                       "a slower first epoch)")
    train.add_argument("--fov", metavar="DIR", help="region masks (field of view) paired like the masks: validation "
                       "figures and the threshold sweep count only the pixels inside (data.fov_dir)")
    train.add_argument("--track", choices=config.TRACKERS, help="mlflow: log config, metrics and artifacts to MLflow "
                       "(runtime.track; MLFLOW_TRACKING_URI; needs unetkit[mlflow])")

    predict = command("predict", _predict, help="write masks for an image or a folder of images")
    _common_inference_flags(predict)
    predict.add_argument("--input", "--images", dest="input", help="an image file or a folder of images")
    layout_flags(predict, masks=False)
    predict.add_argument("--out", required=True, help="output folder: <stem>.png masks (<stem>.tif for multi-label "
                         "models and streamed images); re-running the same job finishes an interrupted one")
    predict.add_argument("--probabilities", action="store_true", help="also write <stem>_prob.tif (float32)")
    predict.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.png")
    predict.add_argument("--rle", metavar="CSV", help="also write run-length-encoded masks (Kaggle TGS/Carvana: "
                         "id,rle_mask; 1-indexed, column-major)")
    _overwrite_flag(predict, "existing files in --out (or --rle) that no earlier prediction job wrote")
    predict.add_argument("--stream-above", type=_megapixels, default=2**26 / 1e6, metavar="MEGAPIXELS",
                         help="TIFF and .npy inputs larger than this are streamed by rows into tiled TIFF masks, "
                         "with memory bounded by the tile (default 67.1)")

    evaluate = command("evaluate", _evaluate, help="score a model on a labelled folder")
    _common_inference_flags(evaluate)
    evaluate.add_argument("--data", help="folder with images/ and masks/ (or --images/--masks, or --pairs)")
    layout_flags(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--csv", help="per-image CSV (default: evaluation-<data folder name>.csv in the current folder)")
    _overwrite_flag(evaluate, "an existing --csv that evaluate did not write")
    evaluate.add_argument("--metrics", metavar="NAMES", help="comma-separated figures (default iou,dice,tgs_map); "
                          "boundary ones are slower. " + measure_names_help())
    evaluate.add_argument("--fov", metavar="DIR", help="region masks (field of view) paired like the labels "
                          "(DIR/ID.png): pixels outside count in no figure")
    evaluate.add_argument("--spacing", metavar="DY,DXUNIT", help="pixel size, e.g. 0.5,0.5mm (units nm, um, mm, "
                          "cm, m, in), or px: distances (hd95, assd, nsd@TOL) in that unit (default: the size each "
                          "file declares, TIFF/PNG resolution, ImageJ, OME; pixels where none)")
    evaluate.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="resamples of the 95%% interval "
                          "over images (default 1000; 0: none)")
    evaluate.add_argument("--bootstrap-seed", type=int, metavar="SEED", help="the bootstrap's seed (default 0)")
    evaluate.add_argument("--track", choices=config.TRACKERS, help="mlflow: also log the figures to "
                          "MLflow (MLFLOW_TRACKING_URI; needs unetkit[mlflow])")
    evaluate.add_argument("--run-id", metavar="ID", help="with --track mlflow: add the figures to this MLflow run "
                          "(the training's, in RUN_DIR/mlflow.json)")

    export = command("export", _export, help="write the model as ONNX (dynamic batch, height, width; metadata)")
    export.add_argument("--model", required=True, help="model file (model.safetensors)")
    export.add_argument("--format", choices=("onnx",))
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.add_argument("--opset", type=int, help="ONNX operator set, 11..20 (default 17)")
    _overwrite_flag(export, "an existing --out that is not a unetkit ONNX export")

    report = command("report", _report, help="write RUN_DIR/report.html: curves, figures, config, sweep, "
                     "best and worst validation images (training writes it too)")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.add_argument("--device", choices=config.DEVICES, default="auto")

    demo = command("demo", _demo, help="synthetic data -> train the seed -> held-out scores (make demo)")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--time-budget", type=float, default=2.5, metavar="MINUTES")
    demo.add_argument("--seed", type=int, default=0)

    plan = command("plan", _plan, help="fingerprint a labelled folder and print how to train on it "
                   "(patch or whole images, patch and batch size, depth, normalisation, tile)")
    plan.add_argument("--data", help="folder with images/ and masks/ (or --images/--masks, or --pairs)")
    layout_flags(plan)
    plan.add_argument("--explain", action="store_true", help="say why each choice was made")
    plan.add_argument("--set", action="append", metavar="FIELD=VALUE", help="fix a plan field (e.g. --set patch_size=256); "
                      "the choices after it follow")
    plan.add_argument("--json", action="store_true", help="print one JSON object: the plan, its whys and the fingerprint")
    plan.add_argument("--device", choices=config.DEVICES, default="auto", help="the device whose memory the batch must fit")
    plan.add_argument("--num-classes", type=int, help="read masks as K classes (default: binary if every mask is)")

    imports = command("import", _import, help="turn an annotation tool's export (COCO, CVAT, "
                      "LabelMe, Label Studio, VOC) into images/, masks/ and classes.yaml")
    imports.add_argument("--format", required=True, choices=FORMATS)
    imports.add_argument("--annotations", required=True, help="the export: JSON or XML file (LabelMe: a folder of "
                         "JSON files too; VOC: the SegmentationClass folder)")
    imports.add_argument("--images", required=True, help="the folder of the images the export names")
    imports.add_argument("--out", required=True, help="the labelled folder to write (new or empty)")
    imports.add_argument("--classes", metavar="A,B,C", help="classes 1.. in this order (default: the file's)")
    imports.add_argument("--drop-unknown", action="store_true", help="leave out shapes whose label is not in "
                         "--classes (default: refuse them)")
    imports.add_argument("--copy", action="store_true", help="copy the images (default: hard links where possible)")

    review = command("review", _review, help="a local web page: the model's most doubtful masks "
                     "first, corrected in the browser, then trained on (needs unetkit[review])")
    _common_inference_flags(review)
    review.add_argument("--images", required=True, help="folder of images to review")
    review.add_argument("--out", required=True, help="LABELS folder: masks/ (what train reads), history/, review.jsonl, "
                        "images/ (copies), predictions/ (cache), runs/ (fine-tunes); starting again resumes")
    review.add_argument("--masks", help="existing masks (read, never written): the editor starts from them and the "
                        "list shows the model's IoU against them")
    review.add_argument("--host", help="address to listen on (default 127.0.0.1: this machine only)")
    review.add_argument("--port", type=int, help="port (default 0: a free one)")
    review.add_argument("--finetune-minutes", type=float, metavar="MINUTES", help="time budget of the page's 'train on "
                        "corrections' (default 2)")

    synth = command("synth", _synth, help="write the embedded synthetic data set (images/ + masks/)")
    synth.add_argument("--out", required=True)
    synth.add_argument("--n", type=int, default=600)
    synth.add_argument("--size", type=int, default=101)
    synth.add_argument("--seed", type=int, default=0)
    return parser


def _import(args: argparse.Namespace) -> None:
    classes = tuple(args.classes.split(",")) if args.classes else ()
    result = api.import_annotations(_config(config.ImportConfig, args, classes=classes))
    print(f"{result.out_dir}: {result.n_images} images, {len(result.classes)} classes ({', '.join(result.classes)}); "
          f"train with --data {result.out_dir} --num-classes {result.num_classes}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit code (0 ok, 2 user error)."""
    args = make_parser().parse_args(argv)
    quiet = getattr(args, "quiet", False) or not distributed.is_main()  # under torchrun rank 0 alone logs progress
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr, force=True)
    try:
        args.run(args)
        distributed.leave()
        return 0
    except UserError as exc:
        print(f"unetkit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("unetkit: interrupted", file=sys.stderr)
        return 130
