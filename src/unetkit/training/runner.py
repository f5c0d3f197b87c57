"""A training run from a config: load and check the data, split it (or fold it), fit, and for K folds assemble the
out-of-fold score and one ensemble model file.

Kept apart from the loop so `fit` stays about epochs, and apart from the API so the API stays a list of entry points.
Under torchrun every rank runs all of this on the same data and split; only rank 0 writes into the run folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit import distributed
from unetkit.config import BALANCE_POWERS, TrainConfig, dump_yaml, from_dict, load_yaml
from unetkit.data.augment import augment_config
from unetkit.data.dataset import LabelledSet, Survey, survey
from unetkit.data.fingerprint import Fingerprint
from unetkit.data.io import dtype_range
from unetkit.data.layout_hints import suspicious_masks
from unetkit.data.masks import check_class_counts, check_class_coverage
from unetkit.data.pairing import DataSource
from unetkit.data.patch_set import PatchSet, patch_set_of
from unetkit.data.preprocess import Preprocess, fit_preprocess
from unetkit.data.split import coverage_classes, stratified_folds, stratified_split
from unetkit.data.weights import balanced_class_weights, border_weights
from unetkit.errors import UserError
from unetkit.export.model_file import load_model
from unetkit.fileio import make_dir, write_text
from unetkit.models.ensemble import Ensemble
from unetkit.models.registry import build_model
from unetkit.runtime import log, resolve_device
from unetkit.tracking import require_mlflow
from unetkit.training.checkpoint import load_checkpoint
from unetkit.training.finish import Held, finish, val_measures
from unetkit.training.guards import check_run_folder, check_training_sizes
from unetkit.training.init import check_init, init_preprocess
from unetkit.training.loop import TrainResult, fit
from unetkit.training.losses import BORDER_WEIGHTED
from unetkit.training.plan import Plan, Settings, make_plan
from unetkit.training.recipes import describe_recipe, resolve_train_config, width_reason

LAST_CHECKPOINT = Path("checkpoints") / "last.safetensors"
DATA_RECORD = "data.json"  # which images the run was trained on, by name and content: --resume refuses other data
SPLIT_RECORD = "split.json"  # the run's training/validation split, or its folds: --resume always keeps it
PLAN_RECORD = "plan.json"  # the fingerprint and the choices made from it (training/plan.py)
STATISTICS_PATCHES = 64  # patches the normalisation statistics of patch training are measured on


def stored_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The config a run in `run_dir` was trained with, as plain data (the base for --resume)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UserError(f"{path}: no training run to resume here")
    return load_yaml(path)


def resumed_config(run_dir: str | os.PathLike[str], *layers: dict[str, Any]) -> TrainConfig:
    """The config of the run in `run_dir` with `layers` (a YAML file's, the flags') laid over it."""
    return resolve_train_config(stored_config(run_dir), *layers)


def run_training(config: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Train per `config` into config.out_dir (see `unetkit.train`). `config` comes out of
    `resolve_train_config`, which checked it; its device is resolved here, once, and passed down."""
    if not config.out_dir:
        raise UserError("no output folder given (--out RUN_DIR)")
    _check_scoring(config)
    check_init(config)
    run_dir = Path(config.out_dir)
    device = resolve_device(config.runtime.device)  # fail before anything is written
    if config.runtime.sync_batchnorm and distributed.launched() and device.type != "cuda":
        raise UserError("sync_batchnorm needs CUDA GPUs (PyTorch's SyncBatchNorm has no CPU kernel); "
                        "leave it off for CPU training")
    distributed.join(device.type)
    if not resume and (run_dir / "config.yaml").exists():
        if any((folder / LAST_CHECKPOINT).is_file() for folder in [run_dir, *run_dir.glob("fold_*")]):  # its, a fold's
            raise UserError(f"{run_dir}: already holds a training run; pass --resume to continue it or choose "
                            "another --out")
        log.info("%s: an earlier run stopped before its first checkpoint; starting afresh", run_dir)
    if resume:
        stored = from_dict(TrainConfig, stored_config(run_dir))
        if stored.model != config.model:
            raise UserError(f"{run_dir}: the model architecture cannot change on --resume "
                            f"(stored: {stored.model}, asked: {config.model})")
        if stored.data.val_fraction != config.data.val_fraction and (run_dir / SPLIT_RECORD).is_file():
            raise UserError(f"config field 'data.val_fraction': cannot change on --resume (the run keeps the split of "
                            f"{run_dir / SPLIT_RECORD}, made with {stored.data.val_fraction})")
    elif config.data.allow_changed:
        raise UserError("config field 'data.allow_changed': takes effect with --resume only (a new run records its data "
                        "as it is)")
    if not DataSource.from_fields(config.data):
        raise UserError("no data given (--data DIR with images/ and masks/, --images DIR with --masks DIR, or "
                        "--pairs FILE.csv)")
    check_run_folder(config)
    check_training_sizes(config)
    # One pass over the folder (every file checked, each failure naming its file; hashed and fingerprinted as it
    # is read), a plan from its fingerprint (on --resume the run's own), then the set in the plan's mode.
    plan = _stored_plan(run_dir) if resume else None
    surveyed = _survey(config, whole=_set_mode(config) == "whole" or (plan is not None and plan.mode == "whole"),
                       measure=plan is None)
    if plan is None:
        plan = _training_plan(config, device, surveyed.fingerprint)
    plan = distributed.from_main(plan)  # one batch size for all ranks
    settings = _settings(config, plan)
    data = _load(config, surveyed, patches=settings.patch_size > 0)
    files = _files_record(data, surveyed.hashes)
    del surveyed  # whole images: the stacked set is then the only copy of the pixels
    split = None
    if resume:
        _check_same_data(run_dir, files, data, str(DataSource.from_fields(config.data)), config.data.allow_changed)
        split = _stored_split(run_dir, data.stems, config.folds)
    # the consent is for this start only: config.yaml never carries it into the next --resume
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, allow_changed=False))
    if split is None:
        strata = coverage_classes(data.coverage(config.data.ignore_index))
        split = (stratified_folds(strata, config.folds, config.seed) if config.folds >= 2
                 else list(stratified_split(strata, config.data.val_fraction, config.seed)))
    distributed.barrier()  # every rank has checked the folder before rank 0 writes into it
    if distributed.is_main():
        log.info(describe_recipe(config))
        make_dir(run_dir)
        write_text(run_dir / "config.yaml", dump_yaml(config))
        write_text(run_dir / DATA_RECORD, json.dumps(files, indent=1))
        write_text(run_dir / PLAN_RECORD, json.dumps(plan.to_dict(), indent=1))
        if config.folds >= 2:
            folds = [[data.stems[i] for i in fold] for fold in split]
            write_text(run_dir / SPLIT_RECORD, json.dumps({"folds": folds}, indent=1))
    if config.folds >= 2:
        return _train_folds(config, run_dir, data, split, resume, settings, device)
    return _train_split(config, run_dir, data, *split, resume, settings, device)


def _check_scoring(config: TrainConfig) -> None:
    """val_metrics names, the region folder and the tracker, refused in one line before any work."""
    val_measures(config)
    if config.data.fov_dir:
        if config.data.size_policy == "resize":
            raise UserError("config field 'data.fov_dir': region masks need the images at their own size "
                            "(size_policy pad or pad_crop, not resize)")
        if config.folds >= 2:
            raise UserError("config field 'data.fov_dir': not available with folds yet (validation of one split only)")
        if not Path(config.data.fov_dir).is_dir():
            raise UserError(f"{config.data.fov_dir}: region folder not found (data.fov_dir, --fov)")
    if config.runtime.track == "mlflow":
        require_mlflow()


def _set_mode(config: TrainConfig) -> str | None:
    """"whole" or "patch" when the config decides it (a size policy other than pad, data.patch_size), else None."""
    if config.data.size_policy != "pad" or config.data.patch_size == 0:
        return "whole"
    return None if config.data.patch_size is None else "patch"


def _survey(config: TrainConfig, *, whole: bool, measure: bool) -> Survey:
    """The one pass over the config's folder (data/dataset.py::survey); `measure`: fingerprint it too."""
    data, model = config.data, config.model
    return survey(DataSource.from_fields(data), model.in_channels, model.num_classes, ignore_index=data.ignore_index,
                  multilabel=model.multilabel, seed=config.seed, measure=measure, whole=whole,
                  resize_to=data.resize_to if data.size_policy == "resize" else None)


def _load(config: TrainConfig, surveyed: Survey, *, patches: bool) -> LabelledSet | PatchSet:
    """The surveyed folder as a PatchSet or a stacked LabelledSet, checked for classes that never occur."""
    data, model, source = config.data, config.model, str(surveyed.source)
    loaded: LabelledSet | PatchSet
    if patches:
        loaded = patch_set_of(surveyed, model.num_classes, model.multilabel, config.seed)
        check_class_counts(loaded.counts.sum(axis=0), model.num_classes, data.ignore_index, source, model.multilabel)
    else:
        loaded = surveyed.labelled()
        check_class_coverage(loaded.masks, model.num_classes, data.ignore_index, source)
    warning = suspicious_masks(loaded.coverage(data.ignore_index), loaded.whole_masks, source)
    if warning:  # the masks look like a field of view or region, not labels
        log.warning("warning: %s", warning)
    if data.size_policy == "pad_crop":  # pad_crop pads, never shrinks (and trains whole images)
        height, width = loaded.images.shape[1:3]
        if max(height, width) > data.pad_to:
            raise UserError(f"config field 'data.pad_to': {data.pad_to} is smaller than the images "
                            f"({width}x{height}); set it to at least {max(height, width)}")
    return loaded


def _record(path: Path, what: str) -> Any:
    """A JSON record of the run folder, None when absent; one line when it is not JSON."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise UserError(f"{path}: is not {what} unetkit wrote (not JSON)") from None


def _stored_plan(run_dir: Path) -> Plan | None:
    """The run's own plan.json (or None), kept on --resume: free memory may differ now, the batches must not."""
    stored = _record(run_dir / PLAN_RECORD, "a plan")
    try:
        return None if stored is None else Plan.from_dict(stored)
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{run_dir / PLAN_RECORD}: is not a plan unetkit wrote ({exc})") from None


def _training_plan(config: TrainConfig, device: torch.device, found: Fingerprint | None) -> Plan:
    """The plan for this run, made from the data's fingerprint with the config's choices as overrides."""
    if found is None:
        raise ValueError("a new plan needs the data's fingerprint (survey with measure=True)")
    data = config.data
    mode = _set_mode(config)
    overrides: dict[str, Any] = {} if mode is None else {"mode": mode}
    if mode == "patch":
        overrides["patch_size"] = data.patch_size
    if data.foreground_share is not None:
        overrides["foreground_share"] = data.foreground_share
    if config.model.arch == "seed_unet":
        overrides["depth"] = config.model.depth  # the architecture is the config's; the plan only sizes around it
    return make_plan(found, device.type, overrides, model=config.model,
                     config_choices={"monitor": config.monitor, "augment": data.augment,
                                     "balance_classes": config.loss.balance_classes},
                     width_why=width_reason(config))


def _settings(config: TrainConfig, plan: Plan) -> Settings:
    """What the run trains with (plan.Settings), each choice the plan made for it said once. A plan.json written
    before the plan made a choice holds "" there: the resumed run keeps its config.yaml's value."""
    chosen = {}
    for said, name, given in (("monitor", "monitor", config.monitor), ("augment", "augment", config.data.augment),
                              ("class weights", "balance_classes", config.loss.balance_classes)):
        chosen[name] = getattr(plan, name) or given
        if chosen[name] != given:
            log.info("%s %s: %s", said, chosen[name], plan.why.get(name, "the plan's choice"))
    batch, patch, share = config.batch_size, 0, 0.0
    if plan.mode != "whole" and config.data.size_policy == "pad":  # a stored plan may predate a policy change
        if plan.batch_size < batch:
            log.info("batch of %d patches of %d px: %d fit the memory (%s); set --batch-size to choose",
                     plan.batch_size, plan.patch_size, plan.batch_size, plan.why.get("batch_size", "plan"))
            batch = plan.batch_size
        log.info("training on %d x %d patches (%s), %.0f%% centred on foreground", plan.patch_size, plan.patch_size,
                 plan.why.get("mode", ""), 100 * plan.foreground_share)
        patch, share = plan.patch_size, plan.foreground_share
    return Settings(plan, batch_size=batch, patch_size=patch, foreground_share=share, **chosen)


def training_preprocess(config: TrainConfig, images: np.ndarray, plan: Plan | None = None) -> Preprocess:
    """What the model file records about pixels. A pretrained encoder expects its own statistics (ImageNet's
    for most): the net's `input_mean_std` replaces the training set's. `pad_crop` predicts as `pad` (whole
    images, padded by the network). A clip_zscore plan (wide-range float data) clips to its percentiles
    first, and the mean and std are those of the clipped images."""
    if (initial := init_preprocess(config)) is not None:  # a fine-tune keeps its model's normalisation
        return initial
    policy = "pad" if config.data.size_policy == "pad_crop" else config.data.size_policy
    if config.data.normalize and config.model.pretrained != "none":
        if (stats := getattr(build_model(config.model, pretrained=False), "input_mean_std", None)) is not None:
            log.info("normalising with the pretrained encoder's mean %s and std %s", *stats)
            return Preprocess(stats[0], stats[1], policy, config.data.resize_to)
    return fit_preprocess(images, normalize=config.data.normalize, size_policy=policy,
                          resize_to=config.data.resize_to, clip=_planned_clip(plan))


def _planned_clip(plan: Plan | None) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The plan's clipping bounds in scaled units (file units over the bit depth's range), or None."""
    if plan is None or plan.normalization != "clip_zscore" or plan.clip_low is None or plan.clip_high is None:
        return None
    scales = {dtype_range(np.dtype(d)) for d in (plan.fingerprint or {}).get("dtypes", ["float32"])}
    if len(scales) != 1:
        log.info("images of several bit depths: no percentile clipping (plan normalisation clip_zscore)")
        return None
    scale = scales.pop()
    return tuple(v / scale for v in plan.clip_low), tuple(v / scale for v in plan.clip_high)


def _files_record(data: LabelledSet | PatchSet, hashes: dict[Path, str]) -> dict[str, Any]:
    """The data set as --resume compares it: a hash over the image and mask file names, and per pair the
    content hashes of its image and mask (data/io.py::read_array; a size for files read by region)."""
    names = "\n".join(f"{pair.image.name}\t{pair.mask.name}" for pair in data.pairs)
    return {"n_images": len(data), "files_sha256": hashlib.sha256(names.encode("utf-8", "surrogateescape")).hexdigest(),
            "content_sha256": [[hashes.get(pair.image, ""), hashes.get(pair.mask, "")] for pair in data.pairs]}


def _check_same_data(run_dir: Path, files: dict[str, Any], data: LabelledSet | PatchSet, data_dir: str,
                     allow_changed: bool) -> None:
    """--resume on other files is refused; on changed content (same names) too, unless data.allow_changed
    (corrected masks). Either way the run keeps its stored split (`_stored_split`)."""
    if (stored := _record(run_dir / DATA_RECORD, "a data record")) is None:
        return  # stopped before writing it
    if stored.get("files_sha256") != files["files_sha256"]:
        raise UserError(f"{data_dir}: is not the data {run_dir} was trained on ({files['n_images']} images "
                        f"here, {stored.get('n_images')} in the run, other file names); --resume needs the same "
                        "--data, or start a new run with another --out")
    if "content_sha256" not in stored:
        raise UserError(f"{run_dir / DATA_RECORD}: holds no content hashes (written before unetkit recorded them); "
                        "start a new run with another --out")
    changed = [path for pair, before, now in zip(data.pairs, stored["content_sha256"], files["content_sha256"])
               for path, old, new in zip((pair.image, pair.mask), before, now) if old != new]
    if not changed:
        return
    what = f"{changed[0]}: changed since {run_dir} began ({len(changed)} of {2 * len(data)} files differ)"
    if not allow_changed:
        raise UserError(f"{what}; --resume refuses changed data (--set data.allow_changed=true continues on it, "
                        "with the run's split)")
    log.warning("warning: %s; continuing on it with the run's split (data.allow_changed)", what)


def _stored_split(run_dir: Path, stems: list[str], folds: int) -> list[np.ndarray] | None:
    """The split run_dir/split.json records, as sorted indices into `stems`: [train, val], or the K folds'
    held-out images; None when the run stopped before recording one."""
    path = run_dir / SPLIT_RECORD
    if (stored := _record(path, "a split")) is None:
        return None
    groups = stored.get("folds") if folds >= 2 else [stored.get("train"), stored.get("val")]
    if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups) or (
            folds >= 2 and len(groups) != folds):
        kind = f"{len(stored['folds'])} folds" if "folds" in stored else "one training/validation split"
        raise UserError(f"{path}: records {kind}; --resume keeps the run's split (folds {folds} cannot take effect)")
    index = {stem: i for i, stem in enumerate(stems)}
    named = [stem for group in groups for stem in group]
    unknown = [stem for stem in named if stem not in index]
    if unknown or len(named) != len(stems) or len(set(named)) != len(named):
        first = unknown[0] if unknown else sorted(set(stems) - set(named) or {""})[0]
        raise UserError(f"{path}: does not split the data as it is now ({len(named)} names for {len(stems)} images, "
                        f"first mismatch '{first}'); start a new run with another --out")
    return [np.sort(np.array([index[stem] for stem in group], np.int64)) for group in groups]


def _train_split(config: TrainConfig, run_dir: Path, data: LabelledSet | PatchSet, train_idx: np.ndarray,
                 val_idx: np.ndarray, resume: bool, settings: Settings, device: torch.device,
                 preprocess: Preprocess | None = None) -> TrainResult:
    """Fit one model on data[train_idx], validated on data[val_idx] (predicted whole)."""
    last = run_dir / LAST_CHECKPOINT  # its architecture was checked in run_training
    checkpoint = load_checkpoint(last) if resume and last.is_file() else None
    train_set, val_set = data.subset(train_idx), data.held_out(val_idx, config.seed)
    if checkpoint:
        preprocess = checkpoint.preprocess
    elif preprocess is None:
        preprocess = training_preprocess(config, _statistics_sample(config, settings, train_set), settings.plan)
    log.info("%s: %d images for training, %d for validation (stratified by coverage, seed %d)",
             run_dir, len(train_set), len(val_idx), config.seed)
    class_weights = config.loss.class_weights
    power = BALANCE_POWERS.get(settings.balance_classes)
    if power is not None and class_weights is None:
        class_weights = balanced_class_weights(train_set.class_counts(), config.model.num_classes, power)
        log.info("class weights (%s: inverse frequency ** %g): %s", settings.balance_classes, power,
                 ", ".join(f"{w:.3f}" for w in class_weights))
    if config.loss.name in BORDER_WEIGHTED and not settings.patch_size:  # patches: per patch, as drawn
        train_set.weights = np.stack([border_weights(m, config.loss.border_w0, config.loss.border_sigma,
                                                     config.data.ignore_index)
                                      for m in train_set.masks])
    if distributed.is_main():
        make_dir(run_dir)
        write_text(run_dir / SPLIT_RECORD, json.dumps({"train": train_set.stems, "val": [data.stems[i] for i in val_idx]},
                                                      indent=1))
    return fit(config, run_dir, train_set, val_set, preprocess, device, resume=checkpoint, class_weights=class_weights,
               augment=augment_config(settings.augment, config.data.augment_params), settings=settings)


def _statistics_sample(config: TrainConfig, settings: Settings, data: LabelledSet | PatchSet) -> np.ndarray:
    """The images the normalisation statistics are measured on: all of a stacked set, random patches of a patch set."""
    return data.statistics_images(np.random.default_rng((config.seed, 5)), settings.patch_size or 256,
                                  STATISTICS_PATCHES)


def _train_folds(config: TrainConfig, run_dir: Path, data: LabelledSet | PatchSet, folds: list[np.ndarray],
                 resume: bool, settings: Settings, device: torch.device) -> TrainResult:
    """K folds (their held-out indices) into run_dir/fold_i; out-of-fold score; one ensemble model file in run_dir."""
    preprocess = training_preprocess(config, _statistics_sample(config, settings, data), settings.plan)
    selected = range(config.folds) if config.fold is None else [config.fold]
    per_fold = dataclasses.replace(config, folds=0, fold=None, time_budget_min=(
        config.time_budget_min / len(selected) if config.time_budget_min else None))
    results = []
    for index in selected:
        fold_dir = run_dir / f"fold_{index}"
        train_idx = np.setdiff1d(np.arange(len(data)), folds[index])
        if resume and (fold_dir / "model.safetensors").is_file():
            log.info("%s: already trained", fold_dir)
            results.append(_finished_fold(fold_dir))
            continue
        fold_config = dataclasses.replace(per_fold, out_dir=str(fold_dir))
        if distributed.is_main():
            make_dir(fold_dir)
            write_text(fold_dir / "config.yaml", dump_yaml(fold_config))
        results.append(_train_split(fold_config, fold_dir, data, train_idx, folds[index], resume, settings, device,
                                    preprocess))
    if config.fold is not None:
        return dataclasses.replace(results[0], run_dir=run_dir / f"fold_{config.fold}")
    if not distributed.is_main():
        return distributed.from_main(None)
    # The folds' members as one ensemble model file, its decision rule tuned on their out-of-fold predictions.
    members = [load_model(result.model_path).net for result in results]
    held = [Held(net, data.held_out(fold, config.seed)) for net, fold in zip(members, folds)]
    return distributed.from_main(finish(
        config, run_dir, Ensemble(members), held, preprocess, device, settings,  # type: ignore[arg-type]
        made_of=f"ensemble of {len(folds)} folds",
        record={"folds": len(folds), "fold_metrics": [r.val_metrics for r in results]},
        ran={"epochs_done": sum(r.epochs_done for r in results), "best_epoch": 0, "stop_reason": "folds",
             "images_per_s": sum(r.images_per_s for r in results) / len(results), "n_train": len(data),
             "n_val": len(data)}))


def _finished_fold(fold_dir: Path) -> TrainResult:
    saved = load_model(fold_dir / "model.safetensors")
    record = saved.training
    return TrainResult(fold_dir, fold_dir / "model.safetensors", saved.threshold, record.get("val_at_threshold", {}),
                       record.get("epochs_done", 0), 0, 0.0, record.get("stop_reason", ""), postprocess=saved.postprocess)
