"""Frozen, JSON-able configuration objects, validated on construction.

The same objects are written into the run folder (`config.yaml`) and into the model
file's metadata, so a run can always be rebuilt from what it wrote. Every invalid value
raises `UserError` naming the field, because configs come from users (YAML, CLI flags).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import numbers
import os
import reprlib
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

from unetkit.errors import UserError

T = TypeVar("T")
to_dict = dataclasses.asdict  # a config as plain JSON/YAML-able data

# Small closed enumerations of the schema. Names with an implementation behind them (losses,
# optimisers, schedules, augmentation presets, blends, TTA modes, architectures) are owned by
# their registries and checked there (training/recipes.py checks a whole TrainConfig at once).
AMP_MODES = ("auto", "bf16", "fp16", "off")
MONITORS = ("val_loss", "val_iou", "val_dice", "val_map")
AUTO = "auto"  # a value of monitor, data.augment or loss.balance_classes that the plan chooses (training/plan.py)
# loss.balance_classes: class weights = (inverse training-set frequency) ** power, normalised to mean 1
BALANCE_POWERS = {"inverse": 1.0, "tempered": 0.75}
CLASS_BALANCES = ("none", *BALANCE_POWERS)
SIZE_POLICIES = ("pad", "resize", "pad_crop")
THRESHOLD_METRICS = ("tgs_map", "iou", "dice")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
TRACKERS = ("none", "mlflow")  # where runs and evaluations are also logged (unetkit/tracking.py)
MAX_YAML_NODES = 5000  # values in a config once YAML aliases are expanded; the largest real ones hold a few hundred


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise UserError(f"config field '{name}': {message}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    _require(value in choices, name, f"{_shown(value)} is not one of {', '.join(choices)}")


def option(default: Any = None, text: str = "", choices: tuple[str, ...] = ()) -> Any:
    """A config field with its help text (`unetkit train --help` lists it) and the names it may hold, if a closed set."""
    return field(default=default, metadata={"help": text, "choices": choices})


@functools.cache
def _types(cls: type) -> dict[str, tuple[Any, bool, tuple[str, ...]]]:
    """Each field's (real type, None allowed, choices), `X | None` as (X, True, ...): the annotations are strings."""
    hints = typing.get_type_hints(cls)
    unwrapped = {name: typing.get_args(kind)[0] for name, kind in hints.items() if type(None) in typing.get_args(kind)}
    return {spec.name: (unwrapped.get(spec.name, hints[spec.name]), spec.name in unwrapped, spec.metadata.get("choices", ()))
            for spec in fields(cls)}


def _check_fields(config: Any, prefix: str = "") -> None:
    """Every field of `config` checked against its type and choices: the one such check of all configs (YAML, --set, the
    API's keywords and hand-built objects alike). Integers are not bools, 2.5 or '2'; paths become strings and NumPy scalars
    Python ones, so every config stays JSON-able. `prefix` names the section."""
    for name, (kind, optional, choices) in _types(type(config)).items():
        value = getattr(config, name)
        if (checked := _checked_value(f"{prefix}{name}", kind, value, optional)) is not value:
            object.__setattr__(config, name, checked)
        if choices:
            _check_choice(f"{prefix}{name}", checked, choices)


def _checked_value(name: str, kind: Any, value: Any, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if dataclasses.is_dataclass(kind):
        title = kind.__name__
        _require(isinstance(value, kind), name, f"{_shown(value)} is not a {title} (give the section as a {title})")
        return value
    if kind is int:
        _require(isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_), name,
                 f"{_shown(value)} is not an integer")
        _require(-2**63 <= value < 2**63, name, f"{_shown(value)} is too large")  # sizes, counts, seeds: int64
        return value if type(value) is int else int(value)
    if kind is float:
        _require(isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_), name,
                 f"{_shown(value)} is not a number")
        _require(math.isfinite(value), name, f"{_shown(value)} is not a finite number")
        return float(value)
    if kind is bool:
        _require(isinstance(value, bool | np.bool_), name, f"{_shown(value)} is not true or false")
        return bool(value)
    if kind is str:
        value = os.fspath(value) if isinstance(value, os.PathLike) else value
        _require(isinstance(value, str), name, f"{_shown(value)} is not a string")
        return value
    if typing.get_origin(kind) is tuple:
        _require(isinstance(value, list | tuple), name, f"{_shown(value)} must be a list")
        return tuple(_checked_value(f"{name}[{i}]", typing.get_args(kind)[0], v) for i, v in enumerate(value))
    if typing.get_origin(kind) is dict:
        _require(isinstance(value, dict), name, "must be a mapping of field: value")
    return value


@dataclass(frozen=True)
class ModelConfig:
    """The architecture as data; defaults are the seed (Keras TGS kernel, start_neurons=16). `arch` names an
    entry of models/registry.py; the fields below it are read by the architectures that use them."""

    arch: str = option("seed_unet", "seed_unet (the kernel's U-Net) or another registered architecture")
    in_channels: int = option(1, "1 = grayscale (TGS), 3 = RGB")
    num_classes: int = option(1, "1 = binary with sigmoid; >1 = softmax over class indices (or labels, below)")
    multilabel: bool = option(False, "num_classes independent sigmoid labels; masks carry one channel per label")
    start_neurons: int = option(16, "filters at the first level; doubled at every level down")
    depth: int = option(4, "pooling steps; inputs are padded to a multiple of 2**depth")
    dropout_first: float = option(0.25, "after the first pooling (the kernel's 0.25)")
    dropout: float = option(0.5, "after every later pooling and every decoder concatenation")
    batch_norm: bool = option(False, "the seed has none")
    upsampling: str = option("transpose", '"transpose" (3x3 stride-2, the seed) or "bilinear"')
    encoder: str = option("resnet34", 'arch "unet": any timm model with features_only (resnet34, efficientnet_b0, ...)')
    pretrained: str = option("none", "arch unet: none, imagenet (timm's weights, downloaded) or PATH.safetensors")
    attention: str = option("none", 'arch "unet": decoder attention, "none" or "scse"')
    hypercolumn: bool = option(False, 'arch "unet": every decoder level upsampled and concatenated before the head')
    deep_supervision: bool = option(False, 'arch "unet": auxiliary logits at every decoder level while training')
    classification_head: bool = option(False, 'arch "unet": an image-level "anything there?" logit from the encoder')
    image_gate: bool = option(True, "with classification_head: predicted masks gated by its probability (empty if it says so)")

    def __post_init__(self) -> None:
        _check_fields(self, "model.")
        _require(self.in_channels >= 1, "model.in_channels", f"{self.in_channels} must be >= 1")
        # Masks and predicted class maps are 8-bit PNGs.
        _require(1 <= self.num_classes <= 255, "model.num_classes", f"{self.num_classes} must lie in 1..255")
        _require(self.start_neurons >= 1, "model.start_neurons", f"{self.start_neurons} must be >= 1")
        _require(1 <= self.depth <= 7, "model.depth", f"{self.depth} must lie in 1..7")
        for name in ("dropout_first", "dropout"):
            _require(0.0 <= getattr(self, name) < 1.0, f"model.{name}", f"{getattr(self, name)} must lie in [0, 1)")
        _require(self.pretrained != "", "model.pretrained", "must be none, imagenet or a .safetensors path")


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from, what their masks hold and how they are brought to the network."""

    data_dir: str = option("", "folder with images/ and masks/")
    val_fraction: float = option(0.2, "held out for validation, stratified by mask coverage")
    size_policy: str = option("pad", "pad: reflect-pad to a multiple of 2**depth inside the model; resize: resize to "
        "resize_to x resize_to (the kernel's 101 -> 128); pad_crop: training on random crop x crop windows of the images "
        "reflect-padded to pad_to x pad_to (the TGS winners' 101 -> 148, crops of 128), prediction as pad", choices=SIZE_POLICIES)
    resize_to: int = 128
    pad_to: int = option(148, "pad_crop: side the training images are reflect-padded to (>= the images' sides)")
    crop: int = option(128, "pad_crop: side of the random training crops (<= pad_to)")
    patch_size: int | None = option(None, "pad: train on random patch_size x patch_size patches (data/patches.py); None: the "
        "plan decides (patches for mixed sizes or sides over 384, see `unetkit plan`); 0: always whole images")
    foreground_share: float | None = option(None, "share of each batch's patches centred on foreground (on each class in "
        "turn); None: the plan's (a third; half when foreground is rare)")
    patches_per_epoch: int = option(0, "patches that make an epoch; 0: the training pixels over the patch's (one pass's "
        "worth), at least one batch and at most 250 batches")
    normalize: bool = option(True, "standardise: the training set's per-channel mean and std, or with model.pretrained the "
        "encoder's own (ImageNet's for most), which its weights expect")
    ignore_index: int | None = option(None, "mask value excluded from loss and metrics (e.g. 255 = unlabelled)")
    augment: str = option("seed", "seed = random horizontal flips (the kernel's), flips, d4, strong "
        "(data/augment.py), none, or auto: the plan's choice of symmetries from the masks (training/plan.py)")
    augment_params: dict[str, float] = field(default_factory=dict, metadata={"help": "AugmentConfig fields over the preset"})
    images_dir: str = option("", "the images, when not data_dir/images (data/pairing.py)")
    masks_dir: str = option("", "the masks, when not data_dir/masks or data_dir/labels")
    image_name: str = option("", "how an image's file name holds its id, e.g. '{id}_training.tif' (default '{id}.*')")
    mask_name: str = option("", "its mask's file name, e.g. '{id}_manual1.gif' (default '{id}.*' or '{id}_mask.*')")
    pairs: str = option("", "a CSV with columns image,mask (paths relative to it) instead of folders")
    fov_dir: str = option("", "region masks (a field of view) paired like the masks: validation figures and the threshold "
        "sweep count only the pixels inside (training still sees every pixel)")
    allow_changed: bool = option(False, "--resume: continue although images or masks changed since the run began (corrected "
        "masks; refused by default); the run keeps its stored split. Taken once, not stored")

    def __post_init__(self) -> None:
        _check_fields(self, "data.")
        _require(0.0 < self.val_fraction < 1.0, "data.val_fraction", f"{self.val_fraction} must lie in (0, 1)")
        _require(self.resize_to >= 1, "data.resize_to", f"{self.resize_to} must be >= 1")
        _require(1 <= self.crop <= self.pad_to, "data.crop", f"{self.crop} must lie in 1..data.pad_to ({self.pad_to})")
        _require(self.ignore_index is None or 0 <= self.ignore_index <= 255, "data.ignore_index", "must lie in 0..255")
        _require(self.patch_size is None or 0 <= self.patch_size <= 8192,
                 "data.patch_size", f"{self.patch_size!r} must be 0 (whole images) or a side in 1..8192")
        _require(self.foreground_share is None or 0.0 <= self.foreground_share <= 1.0, "data.foreground_share",
                 f"{self.foreground_share!r} must lie in [0, 1]")
        _require(self.patches_per_epoch >= 0, "data.patches_per_epoch", f"{self.patches_per_epoch!r} must be an integer >= 0")


@dataclass(frozen=True)
class LossConfig:
    """The training loss (training/losses.py) and its knobs."""

    name: str = option("bce", "the seed's; bce, bce_dice, dice, focal, tversky, lovasz, weighted_ce, ... (training/losses.py)")
    class_weights: tuple[float, ...] | None = option(None, "per class (K=1: background, foreground)")
    balance_classes: str = option("none", "class weights from the training set's pixel shares: none; inverse (inverse "
                                  "frequency, the paper's w_c); tempered (inverse frequency ** 0.75); auto (the plan's "
                                  "choice). true and false read as inverse and none", choices=(*CLASS_BALANCES, AUTO))
    focal_gamma: float = 2.0
    tversky_alpha: float = option(0.3, "false-positive weight")
    tversky_beta: float = option(0.7, "false-negative weight")
    border_w0: float = option(10.0, "weighted_ce: the paper's w0 ...")
    border_sigma: float = option(5.0, "... and sigma (pixels)")
    image_weight: float = option(0.1, 'model.classification_head: weight of the image-level "any foreground?" BCE')
    aux_weight: float = option(0.1, "model.deep_supervision: weight of the loss on each auxiliary map")
    aux_nonempty_only: bool = option(True, "deep supervision on images with foreground only (the winners' choice)")
    second_name: str | None = option(None, "a second stage: this loss (e.g. lovasz_elu) from second_at of the run on")
    second_at: float = option(0.5, "share of the run (epochs, or the time budget) where the second stage starts, in (0, 1)")
    second_lr: float | None = option(None, "the second stage's peak learning rate (default: optim.lr, unchanged)")

    def __post_init__(self) -> None:
        legacy = {True: "inverse", "on": "inverse", False: "none", "off": "none"}  # files from before the choices
        if isinstance(self.balance_classes, (bool, str)) and self.balance_classes in legacy:
            object.__setattr__(self, "balance_classes", legacy[self.balance_classes])
        _check_fields(self, "loss.")
        for name in ("focal_gamma", "tversky_alpha", "tversky_beta", "image_weight", "aux_weight"):
            _require(getattr(self, name) >= 0, f"loss.{name}", f"{getattr(self, name)} must be >= 0")
        _require(self.class_weights is None or min(self.class_weights, default=0) >= 0, "loss.class_weights",
                 "must be non-negative numbers")
        _require(self.border_sigma > 0 and self.border_w0 >= 0, "loss.border_sigma", "sigma must be > 0 and w0 >= 0")
        _require(0 < self.second_at < 1, "loss.second_at", f"{self.second_at} must lie in (0, 1)")
        _require(self.second_lr is None or self.second_lr > 0, "loss.second_lr", f"{self.second_lr} must be > 0")


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser (training/schedule.py) and what acts on its steps."""

    name: str = option("adam", '"adam" (the seed), "adamw", "sgd" (Nesterov, momentum 0.9)')
    lr: float = option(1e-3, "Adam's Keras default")
    weight_decay: float = 0.0
    grad_clip: float | None = option(None, "max gradient norm")
    ema_decay: float | None = option(None, "exponential moving average of weights (e.g. 0.999); validated and saved")
    swa_start: float | None = option(None, "SWA from this share of the run: epoch-end weights averaged, saved as the model")

    def __post_init__(self) -> None:
        _check_fields(self, "optim.")
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

    name: str = option("plateau", '"plateau" (the seed), "cosine", "sgdr", "onecycle", "poly" (nnU-Net), "constant"')
    warmup_epochs: float = option(0.0, "linear warm-up for cosine/sgdr/poly/constant")
    cycles: int = option(4, "sgdr: cosine cycles (warm restarts) over the run (epochs, or the time budget)")
    snapshots: bool = option(False, "sgdr: the weights at each cycle's end, saved as one ensemble model file")
    plateau_patience: int = option(5, "reduce-on-plateau patience")
    plateau_factor: float = 0.1
    min_lr: float = 1e-5

    def __post_init__(self) -> None:
        _check_fields(self, "schedule.")
        _require(self.warmup_epochs >= 0, "schedule.warmup_epochs", "must be >= 0")
        _require(self.cycles >= 1, "schedule.cycles", f"{self.cycles} must be >= 1")
        _require(self.plateau_patience >= 0, "schedule.plateau_patience", "must be >= 0")
        _require(0 < self.plateau_factor < 1, "schedule.plateau_factor", f"{self.plateau_factor} must lie in (0, 1)")
        _require(self.min_lr >= 0, "schedule.min_lr", f"{self.min_lr} must be >= 0")


@dataclass(frozen=True)
class DecisionConfig:
    """How the stored decision rule is chosen on validation after training (training/threshold.py)."""

    threshold_metric: str = option("iou", 'what the threshold sweep maximises; "tgs_map" rewards empty masks, ask for it',
                                   choices=THRESHOLD_METRICS)
    tune_postprocess: bool = option(False, "also choose min component area and the empty-mask rule on validation")

    def __post_init__(self) -> None:
        _check_fields(self, "decision.")


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how fast training runs; none of it changes what is learnt (deterministic aside)."""

    device: str = option("auto", choices=DEVICES)
    amp: str = option("auto", "mixed precision. auto: on a GPU bf16 where supported, else fp16 with a grad scaler; on a "
        "CPU bf16 where it has bf16 instructions (AVX512-BF16, AMX), else fp32. off: fp32 everywhere", choices=AMP_MODES)
    compile: bool = option(False, "torch.compile the network")
    sync_batchnorm: bool = option(False, "under torchrun on GPUs: batch-norm statistics over every rank's images")
    loader_workers: int | None = option(None, "threads preparing batches; None: 0 on the CPU, up to 8 on a GPU")
    deterministic: bool = option(False, "deterministic kernels (slower on GPU)")
    device_batches: str = option("auto", "training set and augmentation on the device: auto = on CUDA when it fits; on; off",
                                 choices=("auto", "on", "off"))
    tensorboard: bool = option(False, "also write TensorBoard event files (needs the tensorboard package)")
    track: str = option("none", '"mlflow": log config, metrics and artifacts to MLFLOW_TRACKING_URI (the mlflow extra)',
                        choices=TRACKERS)

    def __post_init__(self) -> None:
        _check_fields(self, "runtime.")
        _require(self.loader_workers is None or self.loader_workers >= 0, "runtime.loader_workers", "must be >= 0")


@dataclass(frozen=True)
class TrainConfig:
    """One training run, in sections. Defaults are the seed kernel's recipe."""

    out_dir: str = ""
    recipe: str = option("seed", "named set of defaults (training/recipes.py) the YAML and flags were applied over")
    preset: str = option("seed", "model preset the `model` section was resolved from")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    epochs: int | None = option(200, "the kernel's; early stopping usually ends sooner; none: as many as time_budget_min "
        "allows (a recipe other than seed given a budget and no epochs)")
    batch_size: int = 32
    monitor: str = option("val_loss", "what early stopping, plateau and the best checkpoint watch; auto: the plan's choice "
        "(TGS mAP for data like TGS, else Dice, or mean IoU for classes; training/plan.py)")
    early_stopping_patience: int = option(10, "epochs without improvement; 0 disables")
    time_budget_min: float | None = option(None, "stop cleanly once this much training time is spent")
    seed: int = 0
    folds: int = option(0, "K >= 2: K-fold cross-validation, out-of-fold score, one ensemble model file")
    fold: int | None = option(None, "with folds: train only this fold (0-based)")
    val_metrics: str = option("", 'more validation figures each epoch, e.g. "hd95,nsd@2" (unetkit/measures.py); each becomes '
        "a metrics.csv column val_NAME that monitor may name (val_hd95: lower is better)")
    init_model: str = option("", "fine-tune: start from this model file's weights and normalisation (same architecture)")

    def __post_init__(self) -> None:
        _check_fields(self)
        _require(self.folds == 0 or self.folds >= 2, "folds", f"{self.folds} must be 0 (one split) or >= 2")
        _require(self.fold is None or (self.folds >= 2 and 0 <= self.fold < self.folds), "fold",
                 f"{self.fold} must lie in 0..folds-1 and needs folds >= 2")
        _require(self.epochs is None or self.epochs >= 1, "epochs", f"{self.epochs} must be >= 1")
        _require(self.epochs is not None or self.time_budget_min is not None, "epochs",
                 "none (as many as fit) needs time_budget_min")
        _require(self.batch_size >= 1, "batch_size", f"{self.batch_size} must be >= 1")
        weights = self.loss.class_weights
        _require(weights is None or len(weights) == max(self.model.num_classes, 2), "loss.class_weights",
                 f"needs {max(self.model.num_classes, 2)} non-negative numbers")
        if self.model.multilabel:
            for name, unsupported in (("data.ignore_index", self.data.ignore_index is not None),
                                      ("loss.class_weights", weights is not None or self.loss.balance_classes in BALANCE_POWERS),
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
    device: str = option("auto", choices=DEVICES)
    tile: int | None = None  # images larger than tile x tile are predicted in overlapping tiles; None: the model's
    #                          planned tile (the patch size for patch training, training/plan.py), else 256
    overlap: float = 0.25  # share of a tile that overlaps its neighbour
    blend: str = "gaussian"  # weights of overlapping tiles: gaussian (sigma = tile/8) or constant
    tta: str = "none"  # test-time augmentation: none, flips (4) or d4 (8 symmetries)
    precision: str = option("auto", choices=PRECISIONS)  # auto = bf16 on CUDA GPUs that have it, else fp32; bf16 also on the CPU

    def __post_init__(self) -> None:
        _check_fields(self)
        _require(self.threshold is None or 0.0 <= self.threshold <= 1.0, "threshold", "must lie in [0, 1]")
        _require(self.batch_size >= 1, "batch_size", f"{self.batch_size} must be >= 1")
        _require(self.tile is None or self.tile >= 16, "tile", f"{self.tile} must be >= 16")
        _require(0.0 <= self.overlap < 1.0, "overlap", f"{self.overlap} must lie in [0, 1)")


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
    track: str = option("none", choices=TRACKERS)  # "mlflow": also log the figures to MLflow (MLFLOW_TRACKING_URI)
    run_id: str = ""  # with track mlflow: add the figures to this run (a training's); empty: a new run

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.resamples >= 0, "resamples", f"{self.resamples} must be >= 0")
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


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """Writing a model file in another format (ONNX)."""

    model_path: str
    out_path: str
    format: str = option("onnx", choices=("onnx",))
    opset: int = 17  # ONNX operator set
    overwrite: bool = False  # replace an existing file that is not a unetkit ONNX export

    def __post_init__(self) -> None:
        _check_fields(self)
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


def from_dict(cls: type[T], values: dict[str, Any], *, where: str = "") -> T:
    """`cls` from plain data (a YAML file's, a stored record's), recursing into its sections by the fields'
    types; unknown keys are errors naming the known ones, the values are the config's own to check."""
    if not isinstance(values, dict):
        raise UserError(f"config section '{where or cls.__name__}' must be a mapping, got {type(values).__name__}")
    if cls is ModelConfig and isinstance(values.get("pretrained"), bool):  # YAML `pretrained: true|false`
        values = {**values, "pretrained": "imagenet" if values["pretrained"] else "none"}
    known = _types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{where}.{str(key)[:200]}" if where else str(key)[:200]
        if key not in known:
            raise UserError(f"config field '{name}' is unknown (known: {', '.join(known)})")
        kind = known[key][0]
        kwargs[key] = from_dict(kind, value, where=name) if dataclasses.is_dataclass(kind) else _from_yaml(kind, value)
    return cls(**kwargs)


def _from_yaml(kind: Any, value: Any) -> Any:
    """What YAML 1.1 (PyYAML) reads otherwise than it is meant: 1e-3 (no dot) as a string, off/on/no/yes as
    booleans; undone where the field's type says so."""
    if kind is float and isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value)
    if kind is str and isinstance(value, bool):
        return "on" if value else "off"
    return value


def layer_from_fields(named: Iterable[tuple[str, str, Any]]) -> dict[str, Any]:
    """A layer of config data from (origin, name, value) triples, as the API's keywords and the CLI's
    flags and --set give them; `origin` is how the user wrote it (`--data`, `time_budget`). A name is a
    field (`epochs`), a section as a mapping (`model`, {"batch_norm": True}) or a dotted path (`optim.lr`).
    One field given twice with different values is refused naming both: no door contradicts itself."""
    layer: dict[str, Any] = {}
    given: dict[str, tuple[str, Any]] = {}  # dotted path: (origin, value)
    for source, name, value in named:
        section = isinstance(value, dict) and dataclasses.is_dataclass(_types(TrainConfig).get(name, (None,))[0])
        for path, leaf in [(f"{name}.{key}", leaf) for key, leaf in value.items()] if section else [(name, value)]:
            if path in given and given[path][1] != leaf:
                raise UserError(f"{source} {_shown(leaf)} contradicts {given[path][0]} {_shown(given[path][1])} "
                                f"(both set {path}); give one")
            _put_path(layer, path, leaf)
            given[path] = (source, leaf)
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


def _put_path(layer: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path, making the sections on the way."""
    *sections, name = path.split(".")
    target = layer
    for section in sections:
        target = target.setdefault(section, {})
        if not isinstance(target, dict):
            raise UserError(f"config section '{section}' must be a mapping, got {type(target).__name__}")
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
    if data is not None and not isinstance(data, dict):
        raise UserError(f"{file}: a config file must hold a mapping of field: value")
    return data or {}


def dump_yaml(config: Any) -> str:
    """YAML text of a config, in field order."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently);
    merge keys (`<<: *base`) still override as YAML says."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<`: merged by flatten_mapping below
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"key {_shown(key)} is given twice", key_node.start_mark)
                seen.add(key)
            except TypeError:  # an unhashable key: PyYAML's own error follows
                break
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
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        line = f", line {mark.line + 1}" if (mark := getattr(exc, "problem_mark", None)) is not None else ""
        raise UserError(f"{where}: not valid YAML ({problem[:200]}{line})") from None
    finally:
        loader.dispose()


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """How many nodes `root` stands for with every alias expanded, counting each shared node's size
    once (so the work is linear in the text); at most `limit` + 1."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) not in sizes:
            sizes[id(node)] = limit + 1  # while it is counted: a node inside itself is past the limit
            children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else \
                node.value if isinstance(node, yaml.SequenceNode) else []
            sizes[id(node)] = min(limit + 1, 1 + sum(size(child) for child in children))
        return sizes[id(node)]

    return size(root)
