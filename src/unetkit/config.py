"""Frozen, JSON-able configuration objects, validated on construction.

The same objects are written into the run folder (`config.yaml`) and into the model
file's metadata, so a run can always be rebuilt from what it wrote. Every invalid value
raises `UserError` naming the field, because configs come from users (YAML, CLI flags).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from unetkit.errors import UserError

T = TypeVar("T")

LOSSES = ("bce", "weighted_ce", "dice", "bce_dice", "focal", "tversky", "lovasz", "bce_lovasz", "focal_dice")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("plateau", "cosine", "onecycle", "poly", "constant")
AMP_MODES = ("auto", "bf16", "fp16", "off")
MONITORS = ("val_loss", "val_iou", "val_dice", "val_map")
SIZE_POLICIES = ("pad", "resize")
UPSAMPLINGS = ("transpose", "bilinear")
THRESHOLD_METRICS = ("tgs_map", "iou", "dice")
DEVICES = ("auto", "cpu", "cuda")
AUGMENTATIONS = ("none", "seed", "strong")
BLENDS = ("gaussian", "constant")
TTA_MODES = ("none", "flips", "d4")
PRECISIONS = ("auto", "fp32", "bf16")


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise UserError(f"config field '{name}': {message}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    _require(value in choices, name, f"'{value}' is not one of {', '.join(choices)}")


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

    def __post_init__(self) -> None:
        _require(self.in_channels >= 1, "model.in_channels", f"{self.in_channels} must be >= 1")
        # Masks and predicted class maps are 8-bit PNGs.
        _require(1 <= self.num_classes <= 255, "model.num_classes", f"{self.num_classes} must lie in 1..255")
        _require(self.start_neurons >= 1, "model.start_neurons", f"{self.start_neurons} must be >= 1")
        _require(1 <= self.depth <= 7, "model.depth", f"{self.depth} must lie in 1..7")
        _check_fraction("model.dropout_first", self.dropout_first)
        _check_fraction("model.dropout", self.dropout)
        _check_choice("model.upsampling", self.upsampling, UPSAMPLINGS)

    @property
    def sigmoid(self) -> bool:
        """True when each output channel is an independent probability (binary or multi-label)."""
        return self.num_classes == 1 or self.multilabel


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are brought to the network."""

    data_dir: str = ""  # folder with images/ and masks/
    val_fraction: float = 0.2  # held out for validation, stratified by mask coverage
    size_policy: str = "pad"  # "pad": reflect-pad to a multiple of 2**depth inside the model;
    #                           "resize": resize to resize_to x resize_to (the kernel's 101 -> 128)
    resize_to: int = 128
    normalize: bool = True  # standardise with the training set's per-channel mean and std
    augment: str = "seed"  # "seed" = random horizontal flips (the kernel's), "strong" (data/augment.py), "none"
    augment_params: dict[str, float] = field(default_factory=dict)  # AugmentConfig fields over the preset

    def __post_init__(self) -> None:
        _require(0.0 < self.val_fraction < 1.0, "data.val_fraction", f"{self.val_fraction} must lie in (0, 1)")
        _check_choice("data.size_policy", self.size_policy, SIZE_POLICIES)
        _require(self.resize_to >= 1, "data.resize_to", f"{self.resize_to} must be >= 1")
        _check_choice("data.augment", self.augment, AUGMENTATIONS)
        from unetkit.data.augment import augment_config

        augment_config(self.augment, self.augment_params)  # validates the keys and values


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are the seed kernel's recipe."""

    out_dir: str = ""
    recipe: str = "seed"  # named set of defaults below (RECIPES) the YAML and flags were applied over
    preset: str = "seed"  # model preset the `model` section was resolved from
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = 200  # the kernel's; early stopping usually ends sooner
    batch_size: int = 32
    lr: float = 1e-3  # Adam's Keras default
    weight_decay: float = 0.0
    loss: str = "bce"  # the seed's; see LOSSES and training/losses.py
    class_weights: tuple[float, ...] | None = None  # per class (K=1: background, foreground)
    balance_classes: bool = False  # class weights = inverse training-set frequency (the paper's w_c)
    ignore_index: int | None = None  # mask value excluded from loss and metrics
    focal_gamma: float = 2.0
    tversky_alpha: float = 0.3  # false-positive weight
    tversky_beta: float = 0.7  # false-negative weight
    border_w0: float = 10.0  # weighted_ce: the paper's w0 ...
    border_sigma: float = 5.0  # ... and sigma (pixels)
    optimizer: str = "adam"  # "adam" (the seed), "adamw", "sgd" (Nesterov, momentum 0.9)
    schedule: str = "plateau"  # "plateau" (the seed), "cosine", "onecycle", "poly" (nnU-Net), "constant"
    warmup_epochs: float = 0.0  # linear warm-up for cosine/poly/constant
    grad_clip: float | None = None  # max gradient norm
    ema_decay: float | None = None  # exponential moving average of weights (e.g. 0.999); validated and saved
    amp: str = "auto"  # mixed precision on CUDA: auto = bf16 where supported, else fp16 with a grad scaler
    compile: bool = False  # torch.compile the network
    sync_batchnorm: bool = False  # under torchrun on GPUs: batch-norm statistics over every rank's images
    loader_workers: int | None = None  # threads preparing batches; None: 0 on the CPU, up to 8 on a GPU
    deterministic: bool = False  # deterministic kernels (slower on GPU)
    tune_postprocess: bool = False  # also choose min component area and the empty-mask rule on validation
    tensorboard: bool = False  # also write TensorBoard event files (needs the tensorboard package)
    monitor: str = "val_loss"  # what early stopping, plateau and the best checkpoint watch
    early_stopping_patience: int = 10  # epochs without improvement; 0 disables
    plateau_patience: int = 5  # reduce-on-plateau patience
    plateau_factor: float = 0.1
    min_lr: float = 1e-5
    time_budget_min: float | None = None  # stop cleanly once this much training time is spent
    threshold_metric: str = "tgs_map"  # what the final threshold sweep maximises
    seed: int = 0
    device: str = "auto"
    folds: int = 0  # K >= 2: K-fold cross-validation, out-of-fold score, one ensemble model file
    fold: int | None = None  # with folds: train only this fold (0-based)

    def __post_init__(self) -> None:
        _require(self.folds == 0 or self.folds >= 2, "folds", f"{self.folds} must be 0 (one split) or >= 2")
        _require(self.fold is None or (self.folds >= 2 and 0 <= self.fold < self.folds), "fold",
                 f"{self.fold} must lie in 0..folds-1 and needs folds >= 2")
        _require(min(self.focal_gamma, self.tversky_alpha, self.tversky_beta) >= 0, "focal_gamma",
                 "focal_gamma, tversky_alpha and tversky_beta must be >= 0")
        _require(self.epochs >= 1, "epochs", f"{self.epochs} must be >= 1")
        _require(self.batch_size >= 1, "batch_size", f"{self.batch_size} must be >= 1")
        _require(self.lr > 0, "lr", f"{self.lr} must be > 0")
        _require(self.weight_decay >= 0, "weight_decay", f"{self.weight_decay} must be >= 0")
        _check_choice("loss", self.loss, LOSSES)
        if self.class_weights is not None:
            try:
                object.__setattr__(self, "class_weights", tuple(float(w) for w in self.class_weights))
            except (TypeError, ValueError):
                raise UserError(f"config field 'class_weights': {self.class_weights!r} must be a list of numbers") from None
            _require(len(self.class_weights) == max(self.model.num_classes, 2) and min(self.class_weights) >= 0,
                     "class_weights", f"needs {max(self.model.num_classes, 2)} non-negative numbers")
        _require(self.ignore_index is None or 0 <= self.ignore_index <= 255, "ignore_index", "must lie in 0..255")
        if self.model.multilabel:
            for name, unsupported in (("loss", self.loss == "weighted_ce"), ("ignore_index", self.ignore_index is not None),
                                      ("class_weights", self.class_weights is not None or self.balance_classes),
                                      ("folds", self.folds >= 2)):
                _require(not unsupported, name, "is not available with model.multilabel yet")
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("amp", self.amp, AMP_MODES)
        _require(self.warmup_epochs >= 0, "warmup_epochs", "must be >= 0")
        _require(self.loader_workers is None or self.loader_workers >= 0, "loader_workers", "must be >= 0")
        _require(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "must be > 0")
        _require(self.ema_decay is None or 0 < self.ema_decay < 1, "ema_decay", "must lie in (0, 1)")
        _require(self.border_sigma > 0 and self.border_w0 >= 0, "border_sigma", "sigma must be > 0 and w0 >= 0")
        _check_choice("monitor", self.monitor, MONITORS)
        _require(self.early_stopping_patience >= 0, "early_stopping_patience", "must be >= 0")
        _require(self.plateau_patience >= 0, "plateau_patience", "must be >= 0")
        _require(0 < self.plateau_factor < 1, "plateau_factor", f"{self.plateau_factor} must lie in (0, 1)")
        _require(self.min_lr >= 0, "min_lr", f"{self.min_lr} must be >= 0")
        _require(
            self.time_budget_min is None or self.time_budget_min > 0,
            "time_budget_min",
            f"{self.time_budget_min} must be > 0",
        )
        _check_choice("threshold_metric", self.threshold_metric, THRESHOLD_METRICS)
        _check_choice("device", self.device, DEVICES)


@dataclass(frozen=True, kw_only=True)
class InferenceOptions:
    """How a model is applied, shared by predict and evaluate so both see images the same way."""

    threshold: float | None = None  # override the threshold stored in the model (binary, multi-label)
    batch_size: int = 16  # images or tiles per forward pass
    device: str = "auto"
    tile: int = 256  # images larger than tile x tile are predicted in overlapping tiles
    overlap: float = 0.25  # share of a tile that overlaps its neighbour
    blend: str = "gaussian"  # weights of overlapping tiles: gaussian (sigma = tile/8) or constant
    tta: str = "none"  # test-time augmentation: none, flips (4) or d4 (8 symmetries)
    precision: str = "auto"  # auto = bf16 on CUDA GPUs that have it, else fp32; bf16 also on the CPU

    def __post_init__(self) -> None:
        _require(self.threshold is None or 0.0 <= self.threshold <= 1.0, "threshold", "must lie in [0, 1]")
        _require(self.batch_size >= 1, "batch_size", f"{self.batch_size} must be >= 1")
        _check_choice("device", self.device, DEVICES)
        _require(self.tile >= 16, "tile", f"{self.tile} must be >= 16")
        _check_fraction("overlap", self.overlap)
        _check_choice("blend", self.blend, BLENDS)
        _check_choice("tta", self.tta, TTA_MODES)
        _check_choice("precision", self.precision, PRECISIONS)


@dataclass(frozen=True, kw_only=True)
class PredictConfig(InferenceOptions):
    """One prediction job: a model file applied to an image or a folder of images."""

    model_path: str
    input_path: str
    out_dir: str
    probabilities: bool = False  # also write float32 probability TIFFs
    overlay: bool = False  # also write image/mask overlay PNGs
    rle: str = ""  # also write a run-length-encoded CSV (Kaggle TGS/Carvana format) to this path
    stream_pixels: int = 2**26  # TIFF/.npy inputs above this many pixels are streamed by rows

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.stream_pixels >= 1, "stream_pixels", f"{self.stream_pixels} must be >= 1")


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig(InferenceOptions):
    """Scoring a model file on a labelled folder (images/ + masks/)."""

    model_path: str
    data_dir: str
    csv_path: str = ""  # per-image scores; empty = <model folder>/evaluation-<data folder>.csv


# Training recipes: named layers of TrainConfig fields under the YAML file and the flags.
RECIPES: dict[str, dict[str, Any]] = {
    # The TGS kernel's recipe, faithfully: the TrainConfig defaults.
    "seed": {},
    # unetkit's best default for a time budget (benchmarks/quality.py): the seed's layers with batch
    # norm and light dropout, AdamW with a cosine schedule laid over the budget, BCE + Dice, batch 16,
    # the model chosen by TGS mAP, small components and the empty-mask rule tuned on validation.
    "fast": {"preset": "seed-bn", "model": {"dropout_first": 0.1, "dropout": 0.1}, "batch_size": 16,
             "optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-4, "schedule": "cosine", "warmup_epochs": 0.5,
             "loss": "bce_dice", "monitor": "val_map", "early_stopping_patience": 0, "tune_postprocess": True},
}


def _merge_into(target: dict[str, Any], layer: dict[str, Any]) -> None:
    for key, value in layer.items():
        if key in ("model", "data") and isinstance(value, dict) and isinstance(target.get(key), dict):
            target[key] = {**target[key], **value}
        else:
            target[key] = dict(value) if isinstance(value, dict) else value


def resolve_train_config(*layers: dict[str, Any]) -> TrainConfig:
    """One TrainConfig from layers of plain data, later layers winning field by field.

    Under all layers lie the recipe they name (default "seed") and, for the `model`
    section, the model preset they name (default "seed").
    """
    from unetkit.models.registry import preset_config  # models import this module

    merged: dict[str, Any] = {}
    for layer in layers:
        _merge_into(merged, layer)
    recipe = merged.get("recipe", "seed")
    if not isinstance(recipe, str) or recipe not in RECIPES:
        raise UserError(f"unknown recipe '{recipe}' (known: {', '.join(RECIPES)})")
    values: dict[str, Any] = {}
    _merge_into(values, RECIPES[recipe])
    _merge_into(values, merged)
    preset = values.get("preset", "seed")
    if not isinstance(preset, str):
        raise UserError(f"config field 'preset': {preset!r} must be a preset name")
    model_values = values.pop("model", None) or {}
    if not isinstance(model_values, dict):
        raise UserError("config section 'model' must be a mapping of field: value")
    values["model"] = {**dataclasses.asdict(preset_config(preset)), **model_values}
    values["recipe"] = recipe
    return from_dict(TrainConfig, values)


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain JSON/YAML-able data."""
    return dataclasses.asdict(config)


def from_dict(cls: type[T], values: dict[str, Any], *, where: str = "") -> T:
    """Build `cls` from plain data, recursing into nested configs; unknown keys are errors."""
    if not isinstance(values, dict):
        raise UserError(f"config section '{where or cls.__name__}' must be a mapping, got {type(values).__name__}")
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{where}.{key}" if where else key
        if key not in known:
            raise UserError(f"config field '{name}' is unknown (known: {', '.join(known)})")
        nested = {"model": ModelConfig, "data": DataConfig}.get(key) if cls is TrainConfig else None
        kwargs[key] = from_dict(nested, value, where=name) if nested else _typed(name, known[key].type, value)
    return cls(**kwargs)


_SCALARS: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "bool": bool, "str": str,
                                                "tuple[float, ...]": (list, tuple), "dict[str, float]": dict}


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
    if isinstance(value, bool) and expected is not bool or not isinstance(value, expected):
        raise UserError(f"config field '{name}': {value!r} is not of type {text}")
    return float(value) if text.startswith("float") else tuple(value) if text.startswith("tuple") else value


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file into plain data, with one-line errors for unreadable files."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{file}: config file not found")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{file}: not valid YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{file}: a config file must hold a mapping of field: value")
    return data


def dump_yaml(config: Any) -> str:
    """YAML text of a config, in field order."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)
