"""The training plan: choices derived from a data fingerprint, each with the reason it was made.

nnU-Net derives patch size, batch size and normalisation from a fingerprint of the data; this is
the same idea, small: `make_plan(fingerprint, device, overrides)` returns a frozen, JSON-able
`Plan`. Every field can be set (`overrides`, `unetkit plan --set FIELD=VALUE`); a set field is
kept, and the choices after it follow from it (a set depth changes the patch multiple, a set
patch size the batch size). The order of the choices: depth, mode, patch size, batch size,
predict tile, normalisation, foreground share, warp margin, then what training watches and how it
augments: the figure that picks the best epoch (`monitor`) and the symmetries of the augmentation
(`augment`), and the class weights (`balance_classes`), for recipes that leave them to the plan ("auto").

Data like TGS (binary, many empty masks) is scored by the TGS mAP, which rewards an empty
prediction on an empty mask; elsewhere the mAP is near zero for thin or large structures alike
and says little, so Dice (binary) or mean IoU (classes) picks the epoch. Flipping upside down and
rotating by 90 degrees are free data where the images have no up and down; where the classes of
the top and bottom halves differ (sky and road), or the data is like TGS (seismic depth, the
recipe's measured choice), only horizontal flips are used. Class-index masks get class weights of
inverse frequency tempered by a power of 0.75: with none, the classes under a few percent of the
pixels (poles, signs, cyclists in street scenes) stay at IoU 0 after a CPU budget; with the
paper's full inverse frequency they are learned, but the common classes are given up for them
(benchmarks/RESULTS.md, CamVid). Binary masks get none: the Dice term of the recipes' loss already
weighs the foreground as a whole.

Memory. `BYTES_PER_PIXEL_PER_NEURON` is the peak memory of one training step of the seed U-Net
per input pixel and per `start_neurons`, measured on the CPU (fp32, depth 4, no batch norm, 1
thread) as the growth of the peak RSS (`ru_maxrss`) over one forward + BCE + backward after a
warm-up step; fewer levels take a little less, batch norm more (`BATCH_NORM_FACTOR`). The
measurements are in benchmarks/RESULTS.md. On CUDA the free memory comes from
torch.cuda.mem_get_info; on the CPU from MemAvailable.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from unetkit.config import AUTO, ModelConfig, _shown
from unetkit.data.augment import PRESETS, describe, warp_margin
from unetkit.data.fingerprint import Fingerprint
from unetkit.data.memory import available_memory
from unetkit.errors import UserError

BYTES_PER_PIXEL_PER_NEURON = 100.0  # peak training-step bytes per input pixel per start_neuron (see above)
BATCH_NORM_FACTOR = 1.35  # the measured factor with batch norm (benchmarks/RESULTS.md), rounded up
MEMORY_SHARE = {"cpu": 0.5, "cuda": 0.8}  # of the free memory the batch may take (the rest: weights, loader)
WHOLE_MAX_SIDE = 384  # images up to this side (all of one size) train whole; larger ones in patches
DEFAULT_PATCH = 256  # patch side before objects ask for more (the U-Net paper's tiles are ~ this size)
MAX_PATCH = 512  # larger patches buy context at the price of batch size
MIN_BATCH, MAX_BATCH = 2, 32  # nnU-Net keeps 2 at least; 32 is the seed's batch
MIN_BOTTLENECK = 4  # smallest side of the deepest feature map (nnU-Net stops pooling there)
FOREGROUND_SHARE, RARE_FOREGROUND_SHARE = 0.33, 0.5  # nnU-Net's 1/3; more when foreground is rare
TGS_LIKE_EMPTY_SHARE = 0.1  # binary masks of which at least this share is empty are scored like TGS
UP_DOWN_LIMIT = 0.1  # top/bottom class difference (total variation) from which images have an up


@dataclass(frozen=True)
class Plan:
    """How to train on a folder. Sizes in pixels; mean/std/clip per channel in the files' units."""

    mode: str  # "whole" (images as they are) or "patch" (patch_size crops by data/patches.py)
    patch_size: int  # square patch side, a multiple of 2**depth (whole mode: the padded image side)
    batch_size: int
    depth: int  # U-Net pooling steps (model.depth)
    start_neurons: int  # model.start_neurons, as the memory estimate assumed
    normalization: str  # "zscore" (per channel) or "clip_zscore" (clip to clip_low..clip_high first)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    clip_low: tuple[float, ...] | None
    clip_high: tuple[float, ...] | None
    predict_tile: int  # the tile `predict` should use for this model
    foreground_share: float  # share of patches centred on foreground (on each class in turn)
    margin: int  # extra pixels read around each patch for affine/elastic warps (strong augmentation)
    memory_bytes: int  # the memory the batch size was fitted into
    monitor: str = ""  # the figure that picks the best epoch ("": a plan from before the plan chose it)
    augment: str = ""  # the augmentation preset (data/augment.py); "" as for monitor
    balance_classes: str = ""  # class weights from pixel shares (config.CLASS_BALANCES); "" as for monitor
    why: dict[str, str] = field(default_factory=dict, compare=False)  # field -> the reason for its value
    fingerprint: dict[str, Any] | None = field(default=None, compare=False)  # what the choices were made from

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (tuples become lists): what plan.json holds."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def choices(self) -> dict[str, Any]:
        """`to_dict` without what the choices were made from and why (`_MEASURED`)."""
        return {name: value for name, value in self.to_dict().items() if name not in _MEASURED}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """A stored plan (plan.json), checked field by field like overrides."""
        values = _coerce(dict(data), stored=True)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in values and f.name not in _MEASURED]
        if missing:
            raise UserError(f"plan: fields {', '.join(missing)} are missing")
        return cls(**values)


@dataclass(frozen=True)
class Settings:
    """What a run trains with where config and plan both speak, made once per run (runner): the plan's
    choices (the config's own where it did not leave them to the plan) and, for patches, a batch no larger
    than fits the memory. config.yaml keeps what was asked and plan.json what was chosen and why, so nothing
    is copied into the config."""

    plan: Plan
    monitor: str
    augment: str
    balance_classes: str
    batch_size: int
    patch_size: int  # 0: whole images
    foreground_share: float


_FIELDS = {f.name: f for f in dataclasses.fields(Plan)}
_MEASURED = ("why", "fingerprint")  # recorded with a plan, never chosen or overridden
# Sides as DataConfig takes them (data.patch_size: at most 8192); depth as ModelConfig takes it.
_INT_RANGES = {"patch_size": (1, 8192), "predict_tile": (16, 8192), "batch_size": (1, None), "depth": (1, 7),
               "start_neurons": (1, None), "memory_bytes": (1, None)}
_INTS = ("patch_size", "batch_size", "depth", "start_neurons", "predict_tile", "margin", "memory_bytes")


def make_plan(fingerprint: Fingerprint, device: str = "cpu", overrides: dict[str, Any] | None = None, *,
              model: ModelConfig | None = None, memory_bytes: int | None = None,
              config_choices: dict[str, str] | None = None, width_why: str | None = None) -> Plan:
    """Choose how to train on the data `fingerprint` describes, on `device` ("cpu", "cuda", "auto").

    `model` gives start_neurons, depth and batch norm of the network (the seed by default);
    `memory_bytes` replaces the device's free memory (tests, or planning for another machine);
    `config_choices` the training config's monitor and augment where they are not AUTO (kept, as the
    config's own: its recipe's or the user's); `width_why` the reason for the model's width where the
    recipe chose it from the kind of masks.
    """
    model = model or ModelConfig()
    chosen = _coerce(dict(overrides or {}))
    why = {name: f"set by you ({name}={chosen[name]!r})" for name in chosen}
    for name, value in (config_choices or {}).items():
        if value != AUTO and name not in chosen:
            chosen[name], why[name] = value, f"the training config's {name} {value!r} (its recipe's or yours)"

    def choose(name: str, value: Any, reason: str) -> Any:
        if name not in chosen:
            chosen[name], why[name] = value, reason
        return chosen[name]

    kind, free = _device_memory(device) if memory_bytes is None else ("given", memory_bytes)
    budget = choose("memory_bytes", int(free * MEMORY_SHARE.get(kind, 0.5)),
                    f"{MEMORY_SHARE.get(kind, 0.5):.0%} of the {_gb(free)} free on {kind}")
    neurons = choose("start_neurons", model.start_neurons,
                     width_why or f"the model's start_neurons ({model.start_neurons})")
    per_pixel = BYTES_PER_PIXEL_PER_NEURON * neurons * (BATCH_NORM_FACTOR if model.batch_norm else 1.0)
    height, width = fingerprint.size_max
    whole_side = max(height, width)
    whole = fingerprint.same_size and whole_side <= WHOLE_MAX_SIDE
    side = min(fingerprint.size_min) if whole else min(DEFAULT_PATCH, *fingerprint.size_median)
    depth = choose("depth", _depth(side, model.depth), _depth_why(side, model.depth))
    multiple = 2**depth
    whole_pixels = _round_up(height, multiple) * _round_up(width, multiple)
    whole = whole and budget // (per_pixel * whole_pixels) >= MIN_BATCH
    mode = choose("mode", "whole" if whole else "patch", _mode_why(fingerprint, whole))
    if mode not in ("whole", "patch"):
        raise UserError(f"plan field 'mode': {mode!r} is not whole or patch")
    if mode == "whole":
        patch = choose("patch_size", _round_up(whole_side, multiple), f"the images' side {whole_side} rounded up "
                       f"to a multiple of {multiple} (2**depth)")
    else:
        patch = choose("patch_size", *_patch_size(fingerprint, multiple, per_pixel, budget))
    if patch % multiple or patch <= 0:
        near = sorted({max(multiple, patch // multiple * multiple), _round_up(max(patch, 1), multiple)})
        raise UserError(f"plan field 'patch_size': {patch} is not a positive multiple of {multiple} (2**depth); "
                        f"train's --patch-size (data.patch_size) sets it: try {' or '.join(map(str, near))}")
    pixels = whole_pixels if mode == "whole" else patch * patch
    fits = int(budget // (per_pixel * pixels))
    batch = choose("batch_size", max(1, min(MAX_BATCH, fits)),
                   f"{fits} samples of {pixels} px fit {_gb(budget)} at {per_pixel:.0f} B/px (start_neurons "
                   f"{neurons}); capped at {MAX_BATCH}" if fits > MAX_BATCH else
                   f"{fits} samples of {pixels} px fit {_gb(budget)} at {per_pixel:.0f} B/px")
    if batch < 1:
        raise UserError(f"plan field 'batch_size': {batch} must be >= 1")
    if batch > fits:
        why["batch_size"] += f"; estimated {_gb(batch * pixels * per_pixel)}, over the budget of {_gb(budget)}"
    choose("predict_tile", patch if mode == "patch" else max(DEFAULT_PATCH, patch),
           "the patch size: the context the network was trained on" if mode == "patch" else
           "at least the image side, so images of the training size are predicted whole")
    _normalization(fingerprint, choose)
    share = FOREGROUND_SHARE
    foreground = 1.0 - fingerprint.class_share[0]
    if mode == "whole":
        choose("foreground_share", 0.0, "whole images: no patches to centre")
    elif fingerprint.foreground_image_share == 0:
        choose("foreground_share", 0.0, "no mask holds foreground")
    elif foreground < 0.01:
        choose("foreground_share", RARE_FOREGROUND_SHARE, f"foreground is rare ({foreground:.2%} of pixels): half "
               "the patches centred on it")
    else:
        choose("foreground_share", share, f"nnU-Net's third of patches centred on foreground ({foreground:.1%} of "
               "pixels are foreground)")
    choose("margin", warp_margin(describe(PRESETS["strong"]), patch) if mode == "patch" else 0,
           "room for the strong preset's affine (15 deg, scale 0.1, shift 0.05) and elastic warps around a patch"
           if mode == "patch" else "whole images are warped with reflection at their borders")
    _training_choices(fingerprint, mode, choose)
    chosen.pop("fingerprint", None)
    return Plan(**chosen, why=why, fingerprint=fingerprint.to_dict())


def _training_choices(fp: Fingerprint, mode: str, choose: Any) -> None:
    """The epoch-picking figure, the augmentation's symmetries and the class weights (the module docstring
    says why)."""
    empty = 1.0 - fp.foreground_image_share
    tgs_like = fp.num_classes == 1 and empty >= TGS_LIKE_EMPTY_SHARE
    if tgs_like:
        choose("monitor", "val_map", f"{empty:.0%} of the masks are empty (data like TGS): the TGS mAP, which "
               "rewards an empty prediction on an empty mask")
    elif fp.num_classes == 1:
        choose("monitor", "val_dice", f"{empty:.0%} of the masks are empty: Dice (F1) of the foreground")
    else:
        choose("monitor", "val_iou", f"{fp.num_classes} classes: their mean IoU")
    square = mode == "patch" or fp.size_max[0] == fp.size_max[1] == fp.size_min[0] == fp.size_min[1]
    up_down = f"top/bottom class difference {fp.up_down_difference:.2f}"
    if tgs_like:
        choose("augment", "seed", "data like TGS: horizontal flips only (seismic images have a depth; the "
               "recipe's measured choice)")
    elif fp.up_down_difference >= UP_DOWN_LIMIT:
        choose("augment", "seed", f"the images have an up ({up_down} >= {UP_DOWN_LIMIT}): horizontal flips only")
    elif square:
        choose("augment", "d4", f"no up and down ({up_down} < {UP_DOWN_LIMIT}): all eight symmetries of the square")
    else:
        choose("augment", "flips", f"no up and down ({up_down} < {UP_DOWN_LIMIT}), images not square: horizontal "
               "and vertical flips")
    present = [share for share in fp.class_share if share > 0]
    if fp.num_classes > 1 and len(present) > 1:
        choose("balance_classes", "tempered", f"{fp.num_classes} classes, the rarest {min(present):.2%} of the pixels "
               f"and the commonest {max(present):.1%}: weights of inverse frequency ** 0.75")
    else:
        choose("balance_classes", "none", "binary masks: the loss's Dice term weighs the foreground as a whole"
               if fp.num_classes == 1 else "one class present: nothing to balance")


def _device_memory(device: str) -> tuple[str, int]:
    """("cuda" | "cpu", free bytes): torch.cuda.mem_get_info on a GPU, MemAvailable on the CPU."""
    if device in ("cuda", "auto"):
        import torch

        if torch.cuda.is_available():
            return "cuda", int(torch.cuda.mem_get_info()[0])
        if device == "cuda":
            raise UserError("plan: --device cuda but no CUDA GPU is available")
    return "cpu", _available_ram()


def _available_ram() -> int:
    return available_memory()


def _depth(side: int, depth: int) -> int:
    while depth > 1 and side / 2**depth < MIN_BOTTLENECK:
        depth -= 1
    return depth


def _depth_why(side: int, depth: int) -> str:
    chosen = _depth(side, depth)
    if chosen == depth:
        return f"the model's depth: a {side} px side keeps {side // 2**depth} px at the bottleneck"
    return (f"{depth} pooling steps would leave {side / 2**depth:.1f} px of a {side} px side at the bottleneck; "
            f"{chosen} keep at least {MIN_BOTTLENECK}")


def _mode_why(fp: Fingerprint, whole: bool) -> str:
    if whole:
        return f"all images are {fp.size_max[0]}x{fp.size_max[1]} (up to {WHOLE_MAX_SIDE} px a side): trained whole"
    if not fp.same_size:
        return (f"sizes differ ({fp.size_min[0]}x{fp.size_min[1]} to {fp.size_max[0]}x{fp.size_max[1]}): patches "
                "of one size, no resizing")
    if fp.max_side > WHOLE_MAX_SIDE:
        return f"images of {fp.size_max[0]}x{fp.size_max[1]} exceed {WHOLE_MAX_SIDE} px a side: patches"
    return "two whole images do not fit the memory budget: patches"


def _patch_size(fp: Fingerprint, multiple: int, per_pixel: float, budget: int) -> tuple[int, str]:
    """The largest patch (multiple of 2**depth) covering the typical object that still fits MIN_BATCH."""
    reason = f"{DEFAULT_PATCH} px"
    target = DEFAULT_PATCH
    if fp.object_size_p90 and 1.5 * fp.object_size_p90 > DEFAULT_PATCH:
        target = min(MAX_PATCH, int(1.5 * fp.object_size_p90))
        reason = f"1.5x the 90th-percentile object extent ({fp.object_size_p90:.0f} px), at most {MAX_PATCH}"
    median_side = _round_up(min(fp.size_median), multiple)
    if median_side < target:
        target, reason = median_side, f"the median image side {min(fp.size_median)} (rounded up)"
    patch = max(multiple, target // multiple * multiple)
    while patch > multiple and budget // (per_pixel * patch * patch) < MIN_BATCH:
        patch -= multiple
        reason = f"the largest patch of which {MIN_BATCH} fit the memory budget"
    thin = fp.foreground_width
    if thin is not None and thin < 5:
        reason += f"; thin structures (median width {thin:.1f} px) stay at full resolution"
    return patch, reason + f"; a multiple of {multiple} (2**depth)"


def _normalization(fp: Fingerprint, choose: Any) -> None:
    """Per-channel z-score; percentile clipping first for float data with a wide range (CT-like)."""
    floats = any(d.startswith("float") for d in fp.dtypes)
    wide = min(fp.percentile_00_5) < 0 or max(fp.percentile_99_5) > 10
    if floats and wide:
        choose("normalization", "clip_zscore", f"float data from {min(fp.percentile_00_5):g} to "
               f"{max(fp.percentile_99_5):g} (CT-like): clip to the 0.5/99.5 percentiles, then z-score")
        choose("clip_low", fp.percentile_00_5, "the 0.5 percentile per channel")
        choose("clip_high", fp.percentile_99_5, "the 99.5 percentile per channel")
    else:
        choose("normalization", "zscore", f"{'/'.join(fp.dtypes)} images: per-channel z-score")
        choose("clip_low", None, "no clipping for z-score")
        choose("clip_high", None, "no clipping for z-score")
    choose("mean", fp.mean, f"per-channel mean of {fp.sampled_pixels} sampled pixels")
    choose("std", tuple(max(s, 1e-6) for s in fp.std), f"per-channel std of {fp.sampled_pixels} sampled pixels")


def _coerce(values: dict[str, Any], stored: bool = False) -> dict[str, Any]:
    """Overrides (or, `stored`, a plan.json) checked against Plan's fields: unknown names and wrong
    types are one line naming the field; the measured fields (why, fingerprint) are not overrides."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in _FIELDS or (name in _MEASURED and not stored):
            known = ", ".join(n for n in _FIELDS if n not in _MEASURED)
            raise UserError(f"plan field '{name}' is unknown or not settable (fields: {known})")
        try:
            if name in _INTS:
                if isinstance(value, bool) or float(value) != int(value):
                    raise ValueError
                value = int(value)
                low, high = _INT_RANGES.get(name, (0, None))
                if value < low or (high is not None and value > high):
                    raise UserError(f"plan field '{name}': {value} must lie in {low}..{high or ''}")
            elif name == "foreground_share":
                value = float(value)
                if not 0.0 <= value <= 1.0:
                    raise ValueError
            elif name in ("mean", "std", "clip_low", "clip_high"):
                value = None if value is None and name.startswith("clip") else tuple(float(v) for v in value)
                if value is not None and not all(math.isfinite(v) for v in value):
                    raise ValueError
            elif name in ("mode", "normalization", "monitor", "augment", "balance_classes"):
                value = str(value)
            elif name in _MEASURED:
                value = None if value is None else dict(value)
        except (TypeError, ValueError, OverflowError):
            raise UserError(f"plan field '{name}': {_shown(value)} is not a valid value") from None
        out[name] = value
    if out.get("normalization", "zscore") not in ("zscore", "clip_zscore"):
        raise UserError(f"plan field 'normalization': {out['normalization']!r} is not zscore or clip_zscore")
    return out


def _round_up(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple


def _gb(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"
