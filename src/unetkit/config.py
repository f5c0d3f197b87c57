"""Frozen, JSON-able configuration objects, validated on construction.

The same objects are written into the run folder (`config.yaml`) and into the model
file's metadata, so a run can always be rebuilt from what it wrote. Every invalid value
raises `UserError` naming the field, because configs come from users (YAML, CLI flags).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import reprlib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

from unetkit.errors import UserError

T = TypeVar("T")

# Small closed enumerations of the schema. Names with an implementation behind them (losses,
# optimisers, schedules, augmentation presets, blends, TTA modes, architectures) are owned by
# their registries and checked there (training/recipes.py checks a whole TrainConfig at once).
AMP_MODES = ("auto", "bf16", "fp16", "off")
MONITORS = ("val_loss", "val_iou", "val_dice", "val_map")
AUTO = "auto"  # a value of monitor or data.augment that the training plan chooses (training/plan.py)
SIZE_POLICIES = ("pad", "resize", "pad_crop")
THRESHOLD_METRICS = ("tgs_map", "iou", "dice")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
TRACKERS = ("none", "mlflow")  # where runs and evaluations are also logged (unetkit/tracking.py)


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise UserError(f"config field '{name}': {message}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    _require(value in choices, name, f"{_shown(value)} is not one of {', '.join(choices)}")


def _check_fields(config: Any) -> None:
    """Every field of `config` checked against its annotation, the one type check of all configs
    (YAML, --set, the API's keywords and hand-built objects alike): integer fields take integers
    (not bools, not 2.5, not '2'), float fields finite real numbers, tuple fields lists of them, bool
    fields bools, str fields strings (paths become strings) and section fields their section's class.
    NumPy scalars are turned into Python ones, so every config stays JSON-able."""
    prefix = _PREFIXES.get(type(config).__name__, "")
    for spec in fields(config):
        value = getattr(config, spec.name)
        checked = _checked_value(f"{prefix}{spec.name}", str(spec.type), value)
        if checked is not value:
            object.__setattr__(config, spec.name, checked)


def _checked_value(name: str, annotation: str, value: Any) -> Any:
    kind = annotation.replace(" | None", "")
    if value is None and kind != annotation:
        return None
    if kind in _SECTIONS:
        _require(type(value).__name__ == kind, name, f"{_shown(value)} is not a {kind} (give the section as a {kind})")
        return value
    if kind == "int":
        _require(isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_), name,
                 f"{_shown(value)} is not an integer")
        _require(-2**63 <= value < 2**63, name, f"{_shown(value)} is too large")  # sizes, counts, seeds: int64
        return value if type(value) is int else int(value)
    if kind == "float":
        return _finite(name, value)
    if kind.startswith("tuple[float"):
        _require(isinstance(value, list | tuple), name, f"{_shown(value)} must be a list of numbers")
        return tuple(_finite(f"{name}[{i}]", v) for i, v in enumerate(value))
    if kind == "bool":
        _require(isinstance(value, bool | np.bool_), name, f"{_shown(value)} is not true or false")
        return bool(value)
    if kind == "str":
        value = os.fspath(value) if isinstance(value, os.PathLike) else value
        _require(isinstance(value, str), name, f"{_shown(value)} is not a string")
        return value
    return value


def _finite(name: str, value: Any) -> float:
    """A finite real number as a Python float; NaN and infinity are one line naming the field."""
    _require(isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_), name,
             f"{_shown(value)} is not a number")
    number = float(value)
    _require(math.isfinite(number), name, f"{_shown(value)} is not a finite number")
    return number


def _check_fraction(name: str, value: float, *, closed: bool = False) -> None:
    ok = 0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0
    _require(ok, name, f"{value} must lie in [0, 1{']' if closed else ')'}")


@dataclass(frozen=True)
class ModelConfig:
    """The architecture as data; defaults are the seed (Keras TGS kernel, start_neurons=16).

    `arch` names an entry of models/registry.py; the fields below it are read by the
    architectures that use them (the seed U-Net: start_neurons .. upsampling; the encoder
    U-Net "unet": encoder .. classification_head).
    """

    arch: str = "seed_unet"  # "seed_unet" (the kernel's U-Net) or another registered architecture
    in_channels: int = 1  # 1 = grayscale (TGS), 3 = RGB
    num_classes: int = 1  # 1 = binary with sigmoid; >1 = softmax over class indices (or labels, below)
    multilabel: bool = False  # num_classes independent sigmoid labels; masks carry one channel per label
    start_neurons: int = 16  # filters at the first level; doubled at every level down
    depth: int = 4  # pooling steps; inputs are padded to a multiple of 2**depth
    dropout_first: float = 0.25  # after the first pooling (the kernel's 0.25)
    dropout: float = 0.5  # after every later pooling and every decoder concatenation
    batch_norm: bool = False  # the seed has none
    upsampling: str = "transpose"  # "transpose" (3x3 stride-2, the seed) or "bilinear"
    encoder: str = "resnet34"  # arch "unet": any timm model with features_only (resnet34, efficientnet_b0, ...)
    pretrained: str = "none"  # arch "unet": "none", "imagenet" (timm's weights, downloaded) or PATH.safetensors
    attention: str = "none"  # arch "unet": decoder attention, "none" or "scse"
    hypercolumn: bool = False  # arch "unet": every decoder level upsampled and concatenated before the head
    deep_supervision: bool = False  # arch "unet": auxiliary logits at every decoder level while training
    classification_head: bool = False  # arch "unet": an image-level "anything there?" logit from the encoder
    image_gate: bool = True  # with classification_head: predicted masks gated by its probability (empty if it says so)

    def __post_init__(self) -> None:
        _check_fields(self)
        _require(self.in_channels >= 1, "model.in_channels", f"{self.in_channels} must be >= 1")
        # Masks and predicted class maps are 8-bit PNGs.
        _require(1 <= self.num_classes <= 255, "model.num_classes", f"{self.num_classes} must lie in 1..255")
        _require(self.start_neurons >= 1, "model.start_neurons", f"{self.start_neurons} must be >= 1")
        _require(1 <= self.depth <= 7, "model.depth", f"{self.depth} must lie in 1..7")
        _check_fraction("model.dropout_first", self.dropout_first)
        _check_fraction("model.dropout", self.dropout)
        _require(self.pretrained != "", "model.pretrained", "must be none, imagenet or a .safetensors path")


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from, what their masks hold and how they are brought to the network."""

    data_dir: str = ""  # folder with images/ and masks/
    val_fraction: float = 0.2  # held out for validation, stratified by mask coverage
    size_policy: str = "pad"  # "pad": reflect-pad to a multiple of 2**depth inside the model;
    #                           "resize": resize to resize_to x resize_to (the kernel's 101 -> 128)
    #                           "pad_crop": training on random crop x crop windows of the images reflect-padded
    #                           to pad_to x pad_to (the TGS winners' 101 -> 148, crops of 128); prediction as "pad"
    resize_to: int = 128
    pad_to: int = 148  # pad_crop: side the training images are reflect-padded to (>= the images' sides)
    crop: int = 128  # pad_crop: side of the random training crops (<= pad_to)
    patch_size: int | None = None  # pad: train on random patch_size x patch_size patches (data/patches.py); None:
    #                               the plan decides (patches for mixed sizes or sides over 384, see `unetkit plan`);
    #                               0: always whole images
    foreground_share: float | None = None  # share of each batch's patches centred on foreground (on each class in
    #                                        turn); None: the plan's (a third; half when foreground is rare)
    patches_per_epoch: int = 0  # patches that make an epoch; 0: the training pixels over the patch's (one pass's
    #                             worth), at least one batch and at most 250 batches
    normalize: bool = True  # standardise: the training set's per-channel mean and std, or with model.pretrained
    #                         the encoder's own (ImageNet's for most), which its weights expect
    ignore_index: int | None = None  # mask value excluded from loss and metrics (e.g. 255 = unlabelled)
    augment: str = "seed"  # "seed" = random horizontal flips (the kernel's), "flips", "d4", "strong" (data/augment.py),
    #                        "none", or "auto": the plan's choice of symmetries from the masks (training/plan.py)
    augment_params: dict[str, float] = field(default_factory=dict)  # AugmentConfig fields over the preset
    images_dir: str = ""  # the images, when not data_dir/images (data/pairing.py)
    masks_dir: str = ""  # the masks, when not data_dir/masks or data_dir/labels
    image_name: str = ""  # how an image's file name holds its id, e.g. '{id}_training.tif' (default '{id}.*')
    mask_name: str = ""  # its mask's file name, e.g. '{id}_manual1.gif' (default '{id}.*' or '{id}_mask.*')
    pairs: str = ""  # a CSV with columns image,mask (paths relative to it) instead of folders
    fov_dir: str = ""  # region masks (a field of view) paired like the masks: validation figures and the threshold
    #                    sweep count only the pixels inside (training still sees every pixel)
    allow_changed: bool = False  # --resume: continue although images or masks changed since the run began (corrected
    #                              masks; refused by default); the run keeps its stored split. Taken once, not stored

    def __post_init__(self) -> None:
        _check_fields(self)
        _require(0.0 < self.val_fraction < 1.0, "data.val_fraction", f"{self.val_fraction} must lie in (0, 1)")
        _check_choice("data.size_policy", self.size_policy, SIZE_POLICIES)
        _require(self.resize_to >= 1, "data.resize_to", f"{self.resize_to} must be >= 1")
        _require(1 <= self.crop <= self.pad_to, "data.crop", f"{self.crop} must lie in 1..data.pad_to ({self.pad_to})")
        _require(self.ignore_index is None or 0 <= self.ignore_index <= 255, "data.ignore_index", "must lie in 0..255")
        _require(self.patch_size is None or (isinstance(self.patch_size, int) and 0 <= self.patch_size <= 8192),
                 "data.patch_size", f"{self.patch_size!r} must be 0 (whole images) or a side in 1..8192")
        _require(self.foreground_share is None or 0.0 <= self.foreground_share <= 1.0, "data.foreground_share",
                 f"{self.foreground_share!r} must lie in [0, 1]")
        _require(isinstance(self.patches_per_epoch, int) and self.patches_per_epoch >= 0, "data.patches_per_epoch",
                 f"{self.patches_per_epoch!r} must be an integer >= 0")
        _require(isinstance(self.augment_params, dict), "data.augment_params", "must be a mapping of field: value")


@dataclass(frozen=True)
class LossConfig:
    """The training loss (training/losses.py) and its knobs."""

    name: str = "bce"  # the seed's; bce, bce_dice, dice, focal, tversky, lovasz, weighted_ce, ... (training/losses.py)
    class_weights: tuple[float, ...] | None = None  # per class (K=1: background, foreground)
    balance_classes: bool = False  # class weights = inverse training-set frequency (the paper's w_c)
    focal_gamma: float = 2.0
    tversky_alpha: float = 0.3  # false-positive weight
    tversky_beta: float = 0.7  # false-negative weight
    border_w0: float = 10.0  # weighted_ce: the paper's w0 ...
    border_sigma: float = 5.0  # ... and sigma (pixels)
    image_weight: float = 0.1  # model.classification_head: weight of the image-level "any foreground?" BCE
    aux_weight: float = 0.1  # model.deep_supervision: weight of the loss on each auxiliary map
    aux_nonempty_only: bool = True  # deep supervision on images with foreground only (the winners' choice)
    second_name: str | None = None  # a second stage: this loss (e.g. lovasz_elu) from second_at of the run on
    second_at: float = 0.5  # share of the run (epochs, or the time budget) where the second stage starts, in (0, 1)
    second_lr: float | None = None  # the second stage's peak learning rate (default: optim.lr, unchanged)

    def __post_init__(self) -> None:
        _check_fields(self)
        for name in ("focal_gamma", "tversky_alpha", "tversky_beta"):
            _require(getattr(self, name) >= 0, f"loss.{name}", f"{getattr(self, name)} must be >= 0")
        _require(self.class_weights is None or min(self.class_weights, default=0) >= 0, "loss.class_weights",
                 "must be non-negative numbers")
        _require(self.border_sigma > 0 and self.border_w0 >= 0, "loss.border_sigma", "sigma must be > 0 and w0 >= 0")
        _require(self.image_weight >= 0, "loss.image_weight", f"{self.image_weight} must be >= 0")
        _require(self.aux_weight >= 0, "loss.aux_weight", f"{self.aux_weight} must be >= 0")
        _require(0 < self.second_at < 1, "loss.second_at", f"{self.second_at} must lie in (0, 1)")
        _require(self.second_lr is None or self.second_lr > 0, "loss.second_lr", f"{self.second_lr} must be > 0")


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser (training/schedule.py) and what acts on its steps."""

    name: str = "adam"  # "adam" (the seed), "adamw", "sgd" (Nesterov, momentum 0.9)
    lr: float = 1e-3  # Adam's Keras default
    weight_decay: float = 0.0
    grad_clip: float | None = None  # max gradient norm
    ema_decay: float | None = None  # exponential moving average of weights (e.g. 0.999); validated and saved
    swa_start: float | None = None  # SWA from this share of the run: epoch-end weights averaged, saved as the model

    def __post_init__(self) -> None:
        _check_fields(self)
        _require(self.lr > 0, "optim.lr", f"{self.lr} must be > 0")
        _require(self.weight_decay >= 0, "optim.weight_decay", f"{self.weight_decay} must be >= 0")
        _require(self.grad_clip is None or self.grad_clip > 0, "optim.grad_clip", "must be > 0")
        _require(self.ema_decay is None or 0 < self.ema_decay < 1, "optim.ema_decay", "must lie in (0, 1)")
        _require(self.swa_start is None or 0 < self.swa_start < 1, "optim.swa_start", "must lie in (0, 1)")
        _require(self.swa_start is None or self.ema_decay is None, "optim.swa_start",
                 "and optim.ema_decay both average weights; choose one")


@dataclass(frozen=True)
class ScheduleConfig:
    """How the learning rate moves (training/schedule.py)."""

    name: str = "plateau"  # "plateau" (the seed), "cosine", "sgdr", "onecycle", "poly" (nnU-Net), "constant"
    warmup_epochs: float = 0.0  # linear warm-up for cosine/sgdr/poly/constant
    cycles: int = 4  # sgdr: cosine cycles (warm restarts) over the run (epochs, or the time budget)
    snapshots: bool = False  # sgdr: the weights at each cycle's end, saved as one ensemble model file
    plateau_patience: int = 5  # reduce-on-plateau patience
    plateau_factor: float = 0.1
    min_lr: float = 1e-5

    def __post_init__(self) -> None:
        _check_fields(self)
        _require(self.warmup_epochs >= 0, "schedule.warmup_epochs", "must be >= 0")
        _require(self.cycles >= 1, "schedule.cycles", f"{self.cycles} must be >= 1")
        _require(self.plateau_patience >= 0, "schedule.plateau_patience", "must be >= 0")
        _require(0 < self.plateau_factor < 1, "schedule.plateau_factor", f"{self.plateau_factor} must lie in (0, 1)")
        _require(self.min_lr >= 0, "schedule.min_lr", f"{self.min_lr} must be >= 0")


@dataclass(frozen=True)
class DecisionConfig:
    """How the stored decision rule is chosen on validation after training (training/threshold.py)."""

    threshold_metric: str = "iou"  # what the threshold sweep maximises; "tgs_map" rewards empty masks, ask for it
    tune_postprocess: bool = False  # also choose min component area and the empty-mask rule on validation

    def __post_init__(self) -> None:
        _check_fields(self)
        _check_choice("decision.threshold_metric", self.threshold_metric, THRESHOLD_METRICS)


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how fast training runs; none of it changes what is learnt (deterministic aside)."""

    device: str = "auto"
    # Mixed precision. auto: on a GPU bf16 where supported, else fp16 with a grad scaler; on a CPU bf16
    # where it has bf16 instructions (AVX512-BF16, AMX), else fp32. off: fp32 everywhere.
    amp: str = "auto"
    compile: bool = False  # torch.compile the network
    sync_batchnorm: bool = False  # under torchrun on GPUs: batch-norm statistics over every rank's images
    loader_workers: int | None = None  # threads preparing batches; None: 0 on the CPU, up to 8 on a GPU
    deterministic: bool = False  # deterministic kernels (slower on GPU)
    device_batches: str = "auto"  # training set and augmentation on the device: auto = on CUDA when it fits; on; off
    tensorboard: bool = False  # also write TensorBoard event files (needs the tensorboard package)
    track: str = "none"  # "mlflow": log config, metrics and artifacts to MLFLOW_TRACKING_URI (the mlflow extra)

    def __post_init__(self) -> None:
        _check_fields(self)
        _check_choice("runtime.device", self.device, DEVICES)
        _check_choice("runtime.amp", self.amp, AMP_MODES)
        _check_choice("runtime.device_batches", self.device_batches, ("auto", "on", "off"))
        _require(self.loader_workers is None or self.loader_workers >= 0, "runtime.loader_workers", "must be >= 0")
        _check_choice("runtime.track", self.track, TRACKERS)


@dataclass(frozen=True)
class TrainConfig:
    """One training run, in sections. Defaults are the seed kernel's recipe."""

    out_dir: str = ""
    recipe: str = "seed"  # named set of defaults (training/recipes.py) the YAML and flags were applied over
    preset: str = "seed"  # model preset the `model` section was resolved from
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    epochs: int = 200  # the kernel's; early stopping usually ends sooner
    batch_size: int = 32
    monitor: str = "val_loss"  # what early stopping, plateau and the best checkpoint watch; "auto": the plan's choice
    #                            (TGS mAP for data like TGS, else Dice, or mean IoU for classes; training/plan.py)
    early_stopping_patience: int = 10  # epochs without improvement; 0 disables
    time_budget_min: float | None = None  # stop cleanly once this much training time is spent
    seed: int = 0
    folds: int = 0  # K >= 2: K-fold cross-validation, out-of-fold score, one ensemble model file
    fold: int | None = None  # with folds: train only this fold (0-based)
    val_metrics: str = ""  # more validation figures each epoch, e.g. "hd95,nsd@2" (unetkit/measures.py); each
    #                        becomes a metrics.csv column val_NAME that monitor may name (val_hd95: lower is better)
    init_model: str = ""  # fine-tune: start from this model file's weights and normalisation (same architecture)

    def __post_init__(self) -> None:
        _check_fields(self)
        _require(self.folds == 0 or self.folds >= 2, "folds", f"{self.folds} must be 0 (one split) or >= 2")
        _require(self.fold is None or (self.folds >= 2 and 0 <= self.fold < self.folds), "fold",
                 f"{self.fold} must lie in 0..folds-1 and needs folds >= 2")
        _require(self.epochs >= 1, "epochs", f"{self.epochs} must be >= 1")
        _require(self.batch_size >= 1, "batch_size", f"{self.batch_size} must be >= 1")
        weights = self.loss.class_weights
        _require(weights is None or len(weights) == max(self.model.num_classes, 2), "loss.class_weights",
                 f"needs {max(self.model.num_classes, 2)} non-negative numbers")
        if self.model.multilabel:
            for name, unsupported in (("data.ignore_index", self.data.ignore_index is not None),
                                      ("loss.class_weights", weights is not None or self.loss.balance_classes),
                                      ("folds", self.folds >= 2)):
                _require(not unsupported, name, "is not available with model.multilabel yet")
        _require(0 <= self.seed < 2**32, "seed", f"{self.seed} must lie in 0..2**32-1 (NumPy's seeds)")
        extra = tuple(f"val_{name.strip()}" for name in self.val_metrics.split(",") if name.strip())
        _check_choice("monitor", self.monitor, MONITORS + extra + (AUTO,))
        _require(self.early_stopping_patience >= 0, "early_stopping_patience", "must be >= 0")
        _require(self.time_budget_min is None or self.time_budget_min > 0, "time_budget_min",
                 f"{self.time_budget_min} must be > 0")


@dataclass(frozen=True, kw_only=True)
class InferenceOptions:
    """How a model is applied, shared by predict and evaluate so both see images the same way."""

    threshold: float | None = None  # override the threshold stored in the model (binary, multi-label)
    batch_size: int = 16  # images or tiles per forward pass
    device: str = "auto"
    tile: int | None = None  # images larger than tile x tile are predicted in overlapping tiles; None: the model's
    #                          planned tile (the patch size for patch training, training/plan.py), else 256
    overlap: float = 0.25  # share of a tile that overlaps its neighbour
    blend: str = "gaussian"  # weights of overlapping tiles: gaussian (sigma = tile/8) or constant
    tta: str = "none"  # test-time augmentation: none, flips (4) or d4 (8 symmetries)
    precision: str = "auto"  # auto = bf16 on CUDA GPUs that have it, else fp32; bf16 also on the CPU

    def __post_init__(self) -> None:
        _check_fields(self)
        _require(self.threshold is None or 0.0 <= self.threshold <= 1.0, "threshold", "must lie in [0, 1]")
        _require(self.batch_size >= 1, "batch_size", f"{self.batch_size} must be >= 1")
        _check_choice("device", self.device, DEVICES)
        _require(self.tile is None or self.tile >= 16, "tile", f"{self.tile} must be >= 16")
        _check_fraction("overlap", self.overlap)
        _check_choice("precision", self.precision, PRECISIONS)


@dataclass(frozen=True, kw_only=True)
class PredictConfig(InferenceOptions):
    """One prediction job: a model file applied to an image or a folder of images."""

    model_path: str
    input_path: str = ""  # an image or a folder of images (or give pairs)
    out_dir: str
    probabilities: bool = False  # also write float32 probability TIFFs
    overlay: bool = False  # also write image/mask overlay PNGs
    rle: str = ""  # also write a run-length-encoded CSV (Kaggle TGS/Carvana format) to this path
    overwrite: bool = False  # replace existing files that an earlier prediction job did not write
    stream_pixels: int = 2**26  # TIFF/.npy inputs above this many pixels are streamed by rows
    image_name: str = ""  # only (and all) files of the folder named like this, e.g. '{id}_test.tif'
    pairs: str = ""  # a CSV whose image column lists the images (paths relative to it)

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.stream_pixels >= 1, "stream_pixels", f"{self.stream_pixels} must be >= 1")


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig(InferenceOptions):
    """Scoring a model file on a labelled folder (images/ + masks/)."""

    model_path: str
    data_dir: str = ""  # folder with images/ and masks/ (or the fields below)
    csv_path: str = ""  # per-image scores; empty = evaluation-<data folder>.csv in the current folder
    overwrite: bool = False  # replace an existing CSV that evaluate did not write
    images_dir: str = ""  # as DataConfig's fields of these names (data/pairing.py)
    masks_dir: str = ""
    image_name: str = ""
    mask_name: str = ""
    pairs: str = ""
    metrics: str = ""  # figures to report, e.g. "iou,dice,hd95,nsd@2" (unetkit/measures.py); empty: iou,dice,tgs_map
    fov_dir: str = ""  # region masks paired like the labels: pixels outside count in no figure
    spacing: str = ""  # pixel size "DY,DXUNIT" (e.g. "0.5,0.5mm") or "px" for distances; empty: each file's own
    resamples: int = 1000  # bootstrap resamples over images for the 95% intervals; 0: no intervals
    seed: int = 0  # the bootstrap's seed
    track: str = "none"  # "mlflow": also log the figures to MLflow (MLFLOW_TRACKING_URI)
    run_id: str = ""  # with track mlflow: add the figures to this run (a training's); empty: a new run

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.resamples >= 0, "resamples", f"{self.resamples} must be >= 0")
        _require(isinstance(self.spacing, str), "spacing", f"{self.spacing!r} must be text: 'DY,DXUNIT' "
                 "(e.g. '0.5,0.5mm') or 'px'")
        _check_choice("track", self.track, TRACKERS)
        _require(not self.run_id or self.track == "mlflow", "run_id", "needs track mlflow (--track mlflow)")


@dataclass(frozen=True, kw_only=True)
class ReviewConfig(InferenceOptions):
    """`unetkit review`: a local web page to correct a model's most doubtful masks (review/)."""

    model_path: str
    images_dir: str
    out_dir: str  # LABELS: masks/, history/, review.jsonl, the cached predictions and fine-tuned runs
    masks_dir: str = ""  # existing masks (read, never written): the editor starts from them, the list shows IoU
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    token: str = ""  # empty: a random one, printed in the URL
    finetune_minutes: float = 2.0  # time budget of the page's "train on corrections"
    max_upload_mb: float = 64.0  # largest mask PNG a save may send

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(0 <= self.port <= 65535, "port", f"{self.port} must lie in 0..65535")
        _require(self.finetune_minutes > 0, "finetune_minutes", f"{self.finetune_minutes} must be > 0")
        _require(self.max_upload_mb > 0, "max_upload_mb", f"{self.max_upload_mb} must be > 0")


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain JSON/YAML-able data."""
    return dataclasses.asdict(config)


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """Writing a model file in another format (ONNX)."""

    model_path: str
    out_path: str
    format: str = "onnx"
    opset: int = 17  # ONNX operator set
    overwrite: bool = False  # replace an existing file that is not a unetkit ONNX export

    def __post_init__(self) -> None:
        _check_fields(self)
        _check_choice("format", self.format, ("onnx",))
        # 11: the first with dynamic Pad sizes (reflect padding to the multiple); 20: the newest
        # PyTorch's TorchScript exporter writes.
        _require(11 <= self.opset <= 20, "opset", f"{self.opset} must lie in 11..20 (17 is the tested default)")


@dataclass(frozen=True, kw_only=True)
class ImportConfig:
    """An annotation-tool export turned into a labelled folder (data/importers/)."""

    format: str  # coco, cvat, labelme, labelstudio or voc (data/importers/ owns the names)
    annotations: str  # the export: a JSON or XML file (LabelMe: also a folder; VOC: the SegmentationClass folder)
    images_dir: str  # the images the export names
    out_dir: str  # the folder to write: images/, masks/, classes.yaml
    classes: tuple[str, ...] = ()  # the classes 1.. in order; empty: the file's, in its order
    drop_unknown: bool = False  # leave out shapes of labels not in classes (else they are refused)
    copy: bool = False  # copy the images (default: hard links where the file system allows, else copies)


# Where the flat fields of TrainConfig (before it had sections) live now. Old YAML files, `--set`
# names, stored runs and model-file records keep working: `upgrade_train_layer` moves them.
MOVED_FIELDS: dict[str, str] = {
    **{name: f"loss.{name}" for name in ("class_weights", "balance_classes", "focal_gamma", "tversky_alpha",
                                         "tversky_beta", "border_w0", "border_sigma")},
    "loss": "loss.name", "optimizer": "optim.name",
    **{name: f"optim.{name}" for name in ("lr", "weight_decay", "grad_clip", "ema_decay")},
    "schedule": "schedule.name",
    **{name: f"schedule.{name}" for name in ("warmup_epochs", "plateau_patience", "plateau_factor", "min_lr")},
    **{name: f"decision.{name}" for name in ("threshold_metric", "tune_postprocess")},
    **{name: f"runtime.{name}" for name in ("device", "amp", "compile", "sync_batchnorm", "loader_workers",
                                            "deterministic", "tensorboard")},
    "ignore_index": "data.ignore_index",
}


def upgrade_train_layer(layer: dict[str, Any]) -> dict[str, Any]:
    """A layer of TrainConfig data with every old flat field moved into its section.

    `loss: bce_dice` (a name, not a mapping) is the old form of `loss: {name: bce_dice}`; the same
    holds for `schedule`. A field given both ways takes the section's value.
    """
    if not isinstance(layer, dict):
        return layer
    out: dict[str, Any] = {}
    moved: dict[str, dict[str, Any]] = {}
    for key, value in layer.items():
        if key in MOVED_FIELDS and not (key in ("loss", "schedule") and isinstance(value, dict)):
            section, name = MOVED_FIELDS[key].split(".")
            moved.setdefault(section, {})[name] = value
        else:
            out[key] = value
    for section, values in moved.items():
        given = out.get(section)
        out[section] = {**values, **given} if isinstance(given, dict) else values
    return out


def from_dict(cls: type[T], values: dict[str, Any], *, where: str = "") -> T:
    """Build `cls` from plain data, recursing into nested configs; unknown keys are errors naming
    the known ones. Old flat TrainConfig fields are moved into their sections first."""
    if not isinstance(values, dict):
        raise UserError(f"config section '{where or cls.__name__}' must be a mapping, got {type(values).__name__}")
    if cls is TrainConfig:
        values = upgrade_train_layer(values)
    if cls is ModelConfig and isinstance(values.get("pretrained"), bool):  # YAML `pretrained: true|false`
        values = {**values, "pretrained": "imagenet" if values["pretrained"] else "none"}
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{where}.{str(key)[:200]}" if where else str(key)[:200]
        if key not in known:
            raise UserError(f"config field '{name}' is unknown (known: {', '.join(known)})")
        nested = _SECTIONS.get(str(known[key].type))
        kwargs[key] = from_dict(nested, value, where=name) if nested else _typed(name, known[key].type, value)
    return cls(**kwargs)


_PREFIXES = {"ModelConfig": "model.", "DataConfig": "data.", "LossConfig": "loss.", "OptimConfig": "optim.",
             "ScheduleConfig": "schedule.", "DecisionConfig": "decision.", "RuntimeConfig": "runtime."}
_SECTIONS: dict[str, type] = {cls.__name__: cls for cls in (ModelConfig, DataConfig, LossConfig, OptimConfig,
                                                          ScheduleConfig, DecisionConfig, RuntimeConfig)}
_SECTION_NAMES = frozenset(f.name for f in fields(TrainConfig) if f.type in _SECTIONS)
_SCALARS: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "bool": bool, "str": str,
                                                "tuple[float, ...]": (list, tuple), "tuple[int, ...]": (list, tuple),
                                                "dict[str, float]": dict}


def _typed(name: str, annotation: Any, value: Any) -> Any:
    """`value` checked against a scalar field annotation ("int", "float | None", ...)."""
    text = str(annotation)
    if value is None and "None" in text:
        return None
    expected = _SCALARS.get(text.replace(" | None", ""))
    if expected is None:
        return value
    if text.startswith("float") and isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if text.startswith("str") and isinstance(value, bool):  # YAML 1.1 reads off/on/no/yes as booleans
        value = "on" if value else "off"
    if isinstance(value, bool) and expected is not bool or not isinstance(value, expected):
        raise UserError(f"config field '{name}': {_shown(value)} is not of type {text}")
    return float(value) if text.startswith("float") else tuple(value) if text.startswith("tuple") else value


def layer_from_fields(named: Iterable[tuple[str, str, Any]]) -> dict[str, Any]:
    """A layer of config data from (origin, name, value) triples, as the API's keywords and the
    CLI's flags and --set give them; `origin` is how the user wrote it (`--data`, `time_budget`).

    A name is a field (`epochs`), a section given as a mapping (`model`, {"batch_norm": True}) or a
    dotted path into a section (`optim.lr`). One field given twice with different values is
    refused with one line naming both: no door contradicts itself silently.
    """
    layer: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, name, value in named:
        flat = _flatten(value, name) if isinstance(value, dict) and name in _SECTION_NAMES else [(name, value)]
        for path, leaf in flat:
            if path in origin and _get_path(layer, path) != leaf:
                raise UserError(f"{source} {_shown(leaf)} contradicts {origin[path]} {_shown(_get_path(layer, path))} "
                                f"(both set {path}); give one")
            _put_path(layer, path, leaf)
            origin[path] = source
    return layer


_QUOTE = reprlib.Repr()
_QUOTE.maxlevel, _QUOTE.maxlist, _QUOTE.maxtuple, _QUOTE.maxdict, _QUOTE.maxset = 3, 8, 8, 8, 8
_QUOTE.maxstring = _QUOTE.maxother = _QUOTE.maxlong = 200


def _shown(value: Any, limit: int = 200) -> str:
    """A value as a message quotes it: at most `limit` characters. reprlib bounds the work too: a
    nested value built from YAML aliases may be a few bytes in memory and gigabytes once written out."""
    try:
        text = _QUOTE.repr(value)
    except ValueError:  # an int of over 4300 digits, which Python refuses to write out
        text = f"<{type(value).__name__} of {value.bit_length() if isinstance(value, int) else '?'} bits>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _flatten(section: dict[str, Any], prefix: str) -> list[tuple[str, Any]]:
    """A section's mapping as (dotted path, value) pairs; mappings that are values stay whole."""
    return [(f"{prefix}.{key}", value) for key, value in section.items()]


def _get_path(layer: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        layer = layer.get(part) if isinstance(layer, dict) else None
    return layer


def _put_path(layer: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path; an old flat section value (`loss: bce`) becomes its `name` field."""
    *sections, name = path.split(".")
    target = layer
    for section in sections:
        if not isinstance(target.get(section), dict):
            target[section] = {} if section not in target else {"name": target[section]}
        target = target[section]
    target[name] = value


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file into plain data, with one-line errors for unreadable files."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{file}: config file not found")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{file}: not valid YAML ({exc.reason} at byte {exc.start})") from None
    data = parse_yaml(text, str(file))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{file}: a config file must hold a mapping of field: value")
    return data


def dump_yaml(config: Any) -> str:
    """YAML text of a config, in field order."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)


MAX_YAML_NODES = 5000  # values in a config once YAML aliases are expanded; the largest real ones hold a few hundred


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently).

    Merge keys (`<<: *base`) still override as YAML says: only keys written twice are refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<`: merged by flatten_mapping below
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                twice = key in seen
            except TypeError:  # an unhashable key: PyYAML's own error follows
                break
            if twice:
                raise yaml.constructor.ConstructorError(None, None, f"key {_shown(key)} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, where: str) -> Any:
    """YAML text (a config file's, a --set value's) as plain data, `where` naming it in the one-line
    errors: invalid YAML, a key given twice, or more than MAX_YAML_NODES values once aliases are
    expanded (nested aliases, "billion laughs", make a few lines stand for billions of values)."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise UserError(f"{where}: holds more than {MAX_YAML_NODES} values once its aliases (*name) are "
                            "expanded; a config holds far fewer")
        return loader.construct_document(node)
    except (yaml.YAMLError, RecursionError, ValueError) as exc:  # ValueError: an integer of over 4300 digits
        raise UserError(f"{where}: not valid YAML ({_yaml_problem(exc)})") from None
    finally:
        loader.dispose()


def _yaml_problem(exc: BaseException) -> str:
    """What PyYAML found wrong, and on which line, at most 200 characters."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    where = f", line {mark.line + 1}" if mark is not None else ""
    return f"{problem[:200]}{where}"


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """How many nodes `root` stands for with every alias expanded, counting each shared node's size
    once (so the work is linear in the text); stops early past `limit`. A node inside itself counts
    as past the limit."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            return limit + 1
        open_nodes.add(key)
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else \
            node.value if isinstance(node, yaml.SequenceNode) else []
        total = 1
        for child in children:
            total += size(child)
            if total > limit:
                break
        open_nodes.discard(key)
        sizes[key] = total
        return total

    return size(root)
