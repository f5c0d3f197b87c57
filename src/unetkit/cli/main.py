"""Command line: each subcommand parses its flags into a config and calls one API function.

Only `UserError` is caught, and reduced to one line on stderr with exit code 2; any
other exception is a bug and keeps its traceback (exit 1).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import math
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import yaml

from unetkit import distributed
from unetkit.config import (
    DEVICES,
    MONITORS,
    PRECISIONS,
    SIZE_POLICIES,
    DataConfig,
    DecisionConfig,
    EvaluateConfig,
    ExportConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    PredictConfig,
    ReviewConfig,
    RuntimeConfig,
    ScheduleConfig,
    TrainConfig,
    load_yaml,
)
from unetkit.errors import UserError
from unetkit.inference.tiling import BLENDS
from unetkit.inference.tta import TTA_MODES

SECTIONS = (("", TrainConfig), ("model.", ModelConfig), ("data.", DataConfig), ("loss.", LossConfig),
            ("optim.", OptimConfig), ("schedule.", ScheduleConfig), ("decision.", DecisionConfig),
            ("runtime.", RuntimeConfig))


class LazyChoices:
    """argparse choices read from a registry when a value is checked: the registries of training
    options import torch, which `unetkit predict --model model.onnx` must never do (so the flags
    using these also name a metavar: argparse would otherwise list the choices while building)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def _names(self) -> list[str]:
        return list(getattr(importlib.import_module(self.module), self.name))

    def __contains__(self, value: object) -> bool:
        return value in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def _flag_layer(args: argparse.Namespace) -> dict[str, Any]:
    """The train flags that were given, as a config layer (None = not given), then every --set."""
    given = {
        "out_dir": args.out, "recipe": args.recipe, "preset": args.preset, "epochs": args.epochs,
        "batch_size": args.batch_size, "monitor": args.monitor, "time_budget_min": args.time_budget, "seed": args.seed,
        "folds": args.folds, "fold": args.fold, "init_model": args.init,
        "model": {"in_channels": args.in_channels, "num_classes": args.num_classes},
        "data": {"data_dir": args.data, "val_fraction": args.val_fraction, "size_policy": args.size_policy,
                 "augment": args.augment, "patch_size": args.patch_size},
        "loss": {"name": args.loss}, "optim": {"lr": args.lr},
        "runtime": {"device": args.device, "compile": args.compile},
    }
    layer: dict[str, Any] = {}
    for key, value in given.items():
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if v is not None}
            if value:
                layer[key] = value
        elif value is not None:
            layer[key] = value
    for assignment in args.set or []:
        _set_path(layer, assignment)
    return layer


def _set_path(layer: dict[str, Any], assignment: str) -> None:
    """--set a.b.c=VALUE (VALUE read as YAML) into `layer`; old flat names (lr=...) are moved later."""
    key, equals, text = assignment.partition("=")
    if not key or not equals:
        raise UserError(f"--set {assignment}: expected FIELD=VALUE (e.g. --set model.batch_norm=true)")
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        raise UserError(f"--set {assignment}: the value is not valid YAML") from None
    *sections, name = key.split(".")
    target = layer
    for section in sections:
        if not isinstance(target.get(section), dict):
            target[section] = {} if section not in target else {"name": target[section]}
        target = target[section]
    target[name] = value


def train_layers(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The --config YAML, then the flags and --set (which win)."""
    return [load_yaml(args.config) if args.config else {}, _flag_layer(args)]


def build_train_config(args: argparse.Namespace) -> TrainConfig:
    """Flags (and --set) over the --config YAML over the recipe and preset over the defaults."""
    from unetkit.training.recipes import resolve_train_config

    return resolve_train_config(*train_layers(args))


def _config_fields_help() -> str:
    """Every config field with its default and the comment beside it, by section."""
    lines = ["config fields (YAML keys, sections nest; --set SECTION.FIELD=VALUE):"]
    for prefix, cls in SECTIONS:
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            source = ""
        # a field's line, then the comment lines that continue its comment ("#" and aligned text below it)
        for match in re.finditer(r"^    (\w+): [^=\n]+= ([^#\n]+?)\s*(?:#\s*(.*))?\n((?:    #\s{2,}.*\n)*)", source,
                                 flags=re.M):
            name, default, comment, more = match.groups()
            if "default_factory=" in default and name in {p.rstrip(".") for p, _ in SECTIONS}:
                continue
            comment = " ".join([comment or "", *(line.strip().lstrip("#").strip() for line in more.splitlines())]).strip()
            default = default.strip().replace("field(default_factory=dict)", "{}")
            lines.append(f"  {prefix}{name} = {default}" + (f"  ({comment})" if comment else ""))
    lines.append("older flat names (lr, loss, schedule, device, ...) still work and move into their sections")
    return "\n".join(lines)


def _train(args: argparse.Namespace) -> int:
    from unetkit.api import resume, train

    if args.resume and args.init:
        raise UserError("--init starts a new run from a model file and --resume continues one: give one of them")
    if args.resume:
        result = resume(args.out, *train_layers(args))
    else:
        result = train(build_train_config(args))
    if not distributed.is_main():
        return 0
    metrics = result.val_metrics
    threshold = f"threshold {result.threshold:.2f}, " if result.threshold is not None else ""
    print(f"model: {result.model_path}  ({threshold}best epoch {result.best_epoch} of {result.epochs_done}, "
          f"{result.stop_reason})")
    tgs = f" TGS mAP {metrics['tgs_map']:.4f}" if result.binary else ""
    print(f"validation IoU {metrics['iou']:.4f} Dice {metrics['dice']:.4f}{tgs}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from unetkit.api import predict

    result = predict(PredictConfig(model_path=args.model, input_path=args.input, out_dir=args.out,
                                   probabilities=args.probabilities, overlay=args.overlay, rle=args.rle or "",
                                   overwrite=args.overwrite,
                                   stream_pixels=max(1, int(args.stream_above * 1e6)), **_inference_options(args)))
    if result.rle_path:
        logging.getLogger("unetkit").info("run-length CSV: %s", result.rle_path)
    return 0


def _inference_options(args: argparse.Namespace) -> dict[str, object]:
    return {"threshold": args.threshold, "batch_size": args.batch_size, "device": args.device, "tile": args.tile,
            "overlap": args.overlap, "blend": args.blend, "tta": args.tta, "precision": args.precision}


def _evaluate(args: argparse.Namespace) -> int:
    from unetkit.api import evaluate

    result = evaluate(EvaluateConfig(model_path=args.model, data_dir=args.data, csv_path=args.csv or "",
                                     overwrite=args.overwrite, **_inference_options(args)))
    if not distributed.is_main():
        return 0
    m = result.metrics
    if args.json:
        print(json.dumps({k: m[k] for k in ("iou", "dice", "pixel_accuracy", "tgs_map", "n_images")}
                         | {k: v for k, v in m.items() if k not in ("iou", "dice", "pixel_accuracy", "tgs_map",
                                                                     "n_images")}))
    else:
        tgs = f"  TGS mAP {m['tgs_map']:.4f}" if "class_iou" not in m else ""  # several classes or labels: no TGS
        print(f"{m['n_images']} images  IoU {m['iou']:.4f}  Dice {m['dice']:.4f}  pixel accuracy "
              f"{m['pixel_accuracy']:.4f}{tgs}"
              + (f"  (threshold {m['threshold']:.2f})" if m.get("threshold") is not None else ""))
    logging.getLogger("unetkit").info("per-image scores: %s", result.csv_path)
    return 0


def _export(args: argparse.Namespace) -> int:
    from unetkit.api import export

    result = export(ExportConfig(model_path=args.model, out_path=args.out, format=args.format, opset=args.opset,
                                 overwrite=args.overwrite))
    print(f"{result.path}: written; onnxruntime vs PyTorch, max abs difference of probabilities "
          f"{result.max_difference:.2e}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from unetkit.api import report

    print(report(args.run_dir, device=args.device))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from unetkit.api import demo

    result = demo(args.out, time_budget_min=args.time_budget, seed=args.seed)
    print(f"held-out IoU {result.metrics['iou']:.4f} Dice {result.metrics['dice']:.4f}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from unetkit.api import synth

    out = synth(args.out, args.n, size=args.size, seed=args.seed)
    print(f"{args.n} synthetic image/mask pairs written to {out / 'images'} and {out / 'masks'}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from unetkit.api import plan

    overrides: dict[str, Any] = {}
    for assignment in args.set or []:
        _set_path(overrides, assignment)
    result = plan(args.data, overrides, device=args.device, num_classes=args.num_classes)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(_describe_fingerprint(result.fingerprint or {}))
    print("plan:")
    for name, value in result.to_dict().items():
        if name not in ("why", "fingerprint"):
            print(f"  {name:<17}{value}")
            if args.explain:
                print(f"  {'':<17}why: {result.why.get(name, '')}")
    return 0


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


def _review(args: argparse.Namespace) -> int:
    from unetkit.api import review

    server = review(ReviewConfig(model_path=args.model, images_dir=args.images, out_dir=args.out,
                                 masks_dir=args.masks or "", host=args.host, port=args.port,
                                 finetune_minutes=args.finetune_minutes, **_inference_options(args)))
    print(f"review {len(server.session.images)} images: open {server.url}  (Ctrl-C stops; saved masks are kept)",
          flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:  # the way to stop a server: say what is kept, exit 0
        print(f"review stopped; {len(server.session.store.saved())} reviewed masks in {args.out}/masks", flush=True)
    return 0


def _overwrite_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what} (inputs are never replaced)")


def _megapixels(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:  # 0: stream every TIFF and .npy input
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of megapixels >= 0")
    return value


def _common_inference_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model file (model.safetensors)")
    parser.add_argument("--threshold", type=float, help="binary models: probability threshold (default: stored in the model)")
    parser.add_argument("--batch-size", type=int, default=16, help="images or tiles per forward pass (default 16)")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--tile", type=int, help="images larger than this (pixels, either side) are predicted in "
                        "overlapping tiles of this size (default: the model's planned tile, the patch size of patch "
                        "training; else 256)")
    parser.add_argument("--overlap", type=float, default=0.25, help="share of a tile overlapping the next (default 0.25)")
    parser.add_argument("--blend", choices=BLENDS, default="gaussian",
                        help="weights of overlapping tiles: gaussian (sigma = tile/8, default) or constant")
    parser.add_argument("--tta", choices=TTA_MODES, default="none",
                        help="test-time augmentation: average over the left-right mirror (hflip: images with an up and "
                        "down, like TGS), the 4 flips, or the 8 symmetries of the square (d4)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto (default): bf16 on CUDA GPUs that support it, fp32 otherwise; bf16 on a CPU with "
                        "AVX512-BF16/AMX is ~1.9x faster, probabilities within a few hundredths")


class _TrainHelp(argparse.RawDescriptionHelpFormatter):
    """`train --help` ends with every config field and what each recipe sets. The recipes live with
    the training code, which imports torch: they are read when the help is shown, not when a
    parser is built (predicting through ONNX builds one too)."""

    EPILOG = "@config-fields-and-recipes"

    def _format_text(self, text: str) -> str:
        if text == self.EPILOG:
            from unetkit.training.recipes import BEST_BY_DEVICE, RECIPES

            def sets(name: str, layer: dict[str, Any]) -> str:
                if name == "best":
                    return "; ".join(f"on {'a GPU' if device == 'cuda' else 'the CPU'} {recipe}"
                                     for device, recipe in BEST_BY_DEVICE.items())
                return ", ".join(f"{k}={v}" for k, v in _flat(layer)) or "the defaults above"

            recipes = [f"  {name}: {sets(name, layer)}" for name, layer in RECIPES.items()]
            return _config_fields_help() + "\nrecipes (what each sets over the defaults):\n" + "\n".join(recipes) + "\n"
        return super()._format_text(text)


def _flat(layer: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in layer.items():
        out += _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)]
    return out


def make_parser() -> argparse.ArgumentParser:
    """The `unetkit` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(prog="unetkit", description="U-Net semantic segmentation: train, evaluate, predict.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    commands = parser.add_subparsers(dest="command", required=True)
    quiet = argparse.ArgumentParser(add_help=False)  # -q also after the subcommand (unetkit train -q ...)
    quiet.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only warnings and results")

    train = commands.add_parser(
        "train", parents=[quiet], help="train a U-Net on DIR/images + DIR/masks", formatter_class=_TrainHelp,
        description="Train a U-Net. Precedence: flags and --set > --config YAML > recipe and preset > defaults.",
        epilog=_TrainHelp.EPILOG)
    train.add_argument("--data", help="folder with images/ and masks/ (matched by file stem); required, except "
                       "with --resume or a --config that names data.data_dir")
    train.add_argument("--out", required=True, help="run folder: model.safetensors, metrics.csv, curves.png, checkpoints/")
    train.add_argument("--config", help="YAML file of config fields (sections model:, data:, loss:, optim:, ... nest)")
    train.add_argument("--recipe", choices=LazyChoices("unetkit.training.recipes", "RECIPES"), metavar="RECIPE",
                       help="training recipe: seed (default, the kernel's), fast (the seed's layers tuned for a "
                       "time budget), best (the strongest for a time budget on the device that trains: on a CPU "
                       "best-cpu, chosen by benchmarks/quality.py; on a GPU winners, not yet measured there), "
                       "winners (an encoder U-Net with the TGS winners' training) or best-cpu (fast at half the "
                       "width, without dropout, with an average of the weights)")
    train.add_argument("--preset", choices=LazyChoices("unetkit.models.registry", "PRESETS"), metavar="PRESET",
                       help="model preset: seed (default), seed-bn, small")
    train.add_argument("--augment", choices=LazyChoices("unetkit.data.augment", "PRESETS"), metavar="AUGMENT",
                       help="augmentation preset: none, seed (default: flips), strong")
    train.add_argument("--set", action="append", metavar="FIELD=VALUE",
                       help="any config field below, e.g. --set schedule.name=cosine --set model.batch_norm=true")
    train.add_argument("--epochs", type=int, help="maximum epochs (default 200; early stopping usually ends sooner)")
    train.add_argument("--time-budget", type=float, metavar="MINUTES", help="stop cleanly after this much training time")
    train.add_argument("--seed", type=int, help="seed for the split, initialisation, order and flips (default 0)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--init", metavar="MODEL", help="fine-tune: start from this model file's weights, "
                       "normalisation and training config (the architecture must stay the same), e.g. on the "
                       "masks corrected with `unetkit review`")
    train.add_argument("--folds", type=int, metavar="K", help="K-fold cross-validation: out-of-fold score and one "
                       "ensemble model file (the time budget is shared by the folds)")
    train.add_argument("--fold", type=int, metavar="I", help="with --folds: train only fold I (0-based)")
    train.add_argument("--batch-size", type=int, help="images per step (default: the recipe's, listed below)")
    train.add_argument("--lr", type=float, help="learning rate, optim.lr (default: the recipe's, listed below)")
    train.add_argument("--loss", choices=LazyChoices("unetkit.training.losses", "LOSSES"), metavar="LOSS",
                       help="bce (default), bce_dice, dice, focal, tversky, lovasz, lovasz_elu, bce_lovasz, focal_dice, "
                       "weighted_ce")
    train.add_argument("--monitor", choices=MONITORS, help="value for early stopping and the best checkpoint")
    train.add_argument("--in-channels", type=int, help="image channels (1 gray, 3 RGB, 4); default: detected from "
                       "the first images (a gray picture saved as RGB counts as gray)")
    train.add_argument("--num-classes", type=int, help="1 = binary (sigmoid); >1 = class-index masks (softmax)")
    train.add_argument("--val-fraction", type=float, help="share held out for validation (default 0.2)")
    train.add_argument("--size-policy", choices=SIZE_POLICIES, help="pad (default), resize to data.resize_to, "
                       "or pad_crop (train on random data.crop windows of images padded to data.pad_to)")
    train.add_argument("--patch-size", type=int, metavar="N", help="train on random N x N patches (data.patch_size); "
                       "0: whole images; default: the plan's (patches for mixed sizes or sides over 384; see "
                       "`unetkit plan`)")
    train.add_argument("--device", choices=DEVICES)
    train.add_argument("--compile", action="store_const", const=True, help="torch.compile the network (GPUs; "
                       "a slower first epoch)")
    train.set_defaults(run=_train)

    predict = commands.add_parser("predict", parents=[quiet], help="write masks for an image or a folder of images")
    _common_inference_flags(predict)
    predict.add_argument("--input", required=True, help="an image file or a folder of images")
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
    predict.set_defaults(run=_predict)

    evaluate = commands.add_parser("evaluate", parents=[quiet], help="score a model on a labelled folder")
    _common_inference_flags(evaluate)
    evaluate.add_argument("--data", required=True, help="folder with images/ and masks/")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--csv", help="per-image CSV (default: evaluation-<data folder name>.csv in the current folder)")
    _overwrite_flag(evaluate, "an existing --csv that evaluate did not write")
    evaluate.set_defaults(run=_evaluate)

    export = commands.add_parser("export", parents=[quiet],
                                 help="write the model as ONNX (dynamic batch, height, width; metadata)")
    export.add_argument("--model", required=True, help="model file (model.safetensors)")
    export.add_argument("--format", choices=("onnx",), default="onnx")
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.add_argument("--opset", type=int, default=17, help="ONNX operator set, 11..20 (default 17)")
    _overwrite_flag(export, "an existing --out that is not a unetkit ONNX export")
    export.set_defaults(run=_export)

    report = commands.add_parser("report", parents=[quiet], help="write RUN_DIR/report.html: curves, figures, config, sweep, "
                                 "best and worst validation images (training writes it too)")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.add_argument("--device", choices=DEVICES, default="auto")
    report.set_defaults(run=_report)

    demo = commands.add_parser("demo", parents=[quiet], help="synthetic data -> train the seed -> held-out scores (make demo)")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--time-budget", type=float, default=2.5, metavar="MINUTES")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)

    plan = commands.add_parser("plan", parents=[quiet], help="fingerprint a labelled folder and print how to train on it "
                               "(patch or whole images, patch and batch size, depth, normalisation, tile)")
    plan.add_argument("--data", required=True, help="folder with images/ and masks/")
    plan.add_argument("--explain", action="store_true", help="say why each choice was made")
    plan.add_argument("--set", action="append", metavar="FIELD=VALUE", help="fix a plan field (e.g. --set patch_size=256); "
                      "the choices after it follow")
    plan.add_argument("--json", action="store_true", help="print one JSON object: the plan, its whys and the fingerprint")
    plan.add_argument("--device", choices=DEVICES, default="auto", help="the device whose memory the batch must fit")
    plan.add_argument("--num-classes", type=int, help="read masks as K classes (default: binary if every mask is)")
    plan.set_defaults(run=_plan)

    review = commands.add_parser("review", parents=[quiet], help="a local web page: the model's most doubtful masks "
                                 "first, corrected in the browser, then trained on (needs unetkit[review])")
    _common_inference_flags(review)
    review.add_argument("--images", required=True, help="folder of images to review")
    review.add_argument("--out", required=True, help="LABELS folder: masks/ (what train reads), history/, review.jsonl, "
                        "images/ (copies), predictions/ (cache), runs/ (fine-tunes); starting again resumes")
    review.add_argument("--masks", help="existing masks (read, never written): the editor starts from them and the "
                        "list shows the model's IoU against them")
    review.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    review.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    review.add_argument("--finetune-minutes", type=float, default=2.0, metavar="MINUTES",
                        help="time budget of the page's 'train on corrections' (default 2)")
    review.set_defaults(run=_review)

    synth = commands.add_parser("synth", parents=[quiet], help="write the embedded synthetic data set (images/ + masks/)")
    synth.add_argument("--out", required=True)
    synth.add_argument("--n", type=int, default=600)
    synth.add_argument("--size", type=int, default=101)
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(run=_synth)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit code (0 ok, 2 user error)."""
    args = make_parser().parse_args(argv)
    quiet = args.quiet or not distributed.is_main()  # under torchrun rank 0 alone logs progress
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s",
                        stream=sys.stderr, force=True)
    try:
        code = args.run(args)
        distributed.leave()
        return code
    except UserError as exc:
        print(f"unetkit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("unetkit: interrupted", file=sys.stderr)
        return 130
