"""Quality per minute: recipes x time budgets x folds x seeds, held-out TGS mAP, mean and spread.

On ../shared/data/tgs-salt, split into `--folds` (default 2) coverage-stratified folds
(data/split.py::stratified_folds, seed 0): each run trains on all folds but one (with its own
validation split inside them) for a budget of training minutes, and is scored on the held-out
fold with `unetkit.evaluate`. Every recipe, budget, held-out fold and seed is one run; the table
gives, per recipe and budget, the mean and sample standard deviation of the held-out TGS mAP over
folds x seeds, the mean IoU and the mean number of epochs the budget allowed. The threshold is
tuned for TGS mAP (asked explicitly: unetkit's default is IoU).

Recipes are training/recipes.py's (seed, fast, best, winners, best-cpu; `best` is the device's own,
BEST_BY_DEVICE) or an ablation below: a recipe with one thing changed, to show what each part is
worth. A finished run folder is reused once its record (trained.json: the resolved config and
digests of the image names) matches the run asked for, and a killed run resumes from its checkpoint,
so a long table can be finished in pieces.

Targets (issue 13): best beats fast by >= 0.05 mAP at 10 CPU-minutes; on a GPU, best reaches
>= 0.85 mAP in 30 minutes. Last lines, one per budget:
quality: budget=10cpu best_map=X fast_map=Y gain=Z

    python benchmarks/quality.py --budgets 10,30 --recipes seed,fast,best --seeds 2
    python benchmarks/quality.py --recipes fast,best --budgets 10 --tta hflip   # the same runs, rescored
    python benchmarks/quality.py --quick   # seconds, synthetic data: the smoke test's run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit.api import evaluate, train
from unetkit.config import EvaluateConfig, TrainConfig, to_dict
from unetkit.data.dataset import Pair, find_pairs, load_labelled
from unetkit.data.split import coverage_classes, stratified_folds, stratified_split
from unetkit.data.synthetic import generate_synthetic
from unetkit.fileio import write_text
from unetkit.inference.tta import TTA_MODES
from unetkit.training.recipes import RECIPES, resolve_train_config

TGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tgs-salt"

# Recipes with one part changed or removed: (recipe underneath, config layer over it). `winners-*`
# take apart the TGS winners' encoder U-Net (the GPU's `best`); `fast-*` are the steps from `fast`
# to the CPU's `best` (`best-cpu` is `fast-width-8-ema` without dropout, its average over 500 steps).
ABLATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "winners-bce-only": ("winners", {"loss": {"second_name": None}}),
    "winners-lovasz-plain": ("winners", {"loss": {"second_name": "lovasz"}}),
    "winners-bce-dice": ("winners", {"loss": {"name": "bce_dice"}}),
    "winners-plain-decoder": ("winners", {"model": {"attention": "none", "hypercolumn": False,
                                                    "deep_supervision": False, "classification_head": False}}),
    "winners-no-hypercolumn": ("winners", {"model": {"hypercolumn": False}}),
    "winners-no-gate": ("winners", {"model": {"image_gate": False}}),
    "winners-width-16": ("winners", {"model": {"start_neurons": 16}}),
    "winners-resnet34": ("winners", {"model": {"encoder": "resnet34"}}),
    "winners-efficientnet-b0": ("winners", {"model": {"encoder": "efficientnet_b0"}}),
    "winners-sgdr-snapshots": ("winners", {"schedule": {"name": "sgdr", "cycles": 3, "snapshots": True}}),
    "winners-swa": ("winners", {"optim": {"swa_start": 0.6}}),
    "winners-pad-crop": ("winners", {"data": {"size_policy": "pad_crop", "pad_to": 148, "crop": 128}}),
    "winners-resize-202": ("winners", {"data": {"size_policy": "resize", "resize_to": 202}}),
    "winners-strong-augment": ("winners", {"data": {"augment": "strong"}}),
    "winners-imagenet": ("winners", {"model": {"pretrained": "imagenet"}}),  # needs timm's weights (network)
    "winners-batch-32": ("winners", {"batch_size": 32, "optim": {"lr": 2e-3}}),
    # `fast` with the winners' second stage
    "fast-lovasz-second": ("fast", {"loss": {"second_name": "lovasz_elu", "second_at": 0.6}}),
    # `fast` at half the width: a quarter of the convolutions' work, so about 2.3 times the epochs on a CPU
    "fast-width-8": ("fast", {"model": {"start_neurons": 8}}),
    "fast-width-8-lovasz": ("fast", {"model": {"start_neurons": 8},
                                     "loss": {"second_name": "lovasz_elu", "second_at": 0.6}}),
    "fast-width-8-ema": ("fast", {"model": {"start_neurons": 8}, "optim": {"ema_decay": 0.99}}),
    "fast-width-6-ema": ("fast", {"model": {"start_neurons": 6}, "optim": {"ema_decay": 0.99}}),
    # the CPU's `best` with twice the steps per epoch, or with a shorter average of the weights (its first version)
    "best-cpu-batch-8": ("best-cpu", {"batch_size": 8}),
    "best-cpu-ema-0.99": ("best-cpu", {"optim": {"ema_decay": 0.99}}),
    # the CPU's `best` regularised again, for budgets where it overfits (30 CPU-minutes: ~120 epochs)
    "best-cpu-strong-augment": ("best-cpu", {"data": {"augment": "strong"}}),
    "best-cpu-dropout": ("best-cpu", {"model": {"dropout_first": 0.1, "dropout": 0.1}}),
    # ... or with the winners' second stage: Lovász on elu+1 over the last 40% of the run
    "best-cpu-lovasz-second": ("best-cpu", {"loss": {"second_name": "lovasz_elu", "second_at": 0.6}}),
}


def link_subset(pairs: list[Pair], indices: Sequence[int], root: Path) -> Path:
    """A labelled folder of symbolic links to the chosen pairs."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in indices:
        os.symlink(pairs[i].image.resolve(), root / "images" / pairs[i].image.name)
        os.symlink(pairs[i].mask.resolve(), root / "masks" / pairs[i].mask.name)
    return root


def recipe_layer(name: str) -> dict[str, Any]:
    """The config layer of a recipe or an ablation name."""
    if name in RECIPES:
        return {"recipe": name}
    if name in ABLATIONS:
        base, layer = ABLATIONS[name]
        return {"recipe": base, **layer}
    raise SystemExit(f"quality: unknown recipe '{name}' (recipes: {', '.join(RECIPES)}; ablations: "
                     f"{', '.join(ABLATIONS)})")


def one_run(recipe: str, budget: float, folders: tuple[Path, Path], seed: int, out: Path,
            device: str, epochs: int | None, tta: str = "none", train_missing: bool = True) -> dict[str, Any] | None:
    """Train `recipe` for `budget` minutes on folders[0], score it on folders[1] with test-time
    augmentation `tta`; a finished run (trained.json) is not trained again, and a score is reused,
    once the run is known to be this one (`check_same_run`). None for a run that is not finished
    when `train_missing` is off."""
    base = recipe_layer(recipe)
    layer = base | {"out_dir": str(out), "time_budget_min": budget, "seed": seed,
                    "data": {**base.get("data", {}), "data_dir": str(folders[0])},
                    "decision": {"threshold_metric": "tgs_map"}, "runtime": {"device": device}}
    if epochs is not None:
        layer["epochs"] = epochs
    config = resolve_train_config(layer)
    key = run_key(config, folders)
    finished = next((p for p in (out / "trained.json", out / "score.json") if p.is_file()), None)
    record = read_record(finished) if finished is not None else None
    if record is not None:
        check_same_run(record, key, out)
    score_path = out / ("score.json" if tta == "none" else f"score-{tta}.json")
    if score_path.is_file():
        return read_record(score_path)
    if record is None and not train_missing:
        return None
    if record is None:
        epochs_done = train(config, resume=(out / "checkpoints" / "last.safetensors").is_file()).epochs_done
        write_text(out / "trained.json", json.dumps({"epochs": epochs_done, **key}))
    else:
        epochs_done = record["epochs"]
    metrics = evaluate(EvaluateConfig(model_path=str(out / "model.safetensors"), data_dir=str(folders[1]), tta=tta,
                                      csv_path=str(out / f"held_out-{tta}.csv"), device=device, overwrite=True)).metrics
    score = {"recipe": recipe, "budget_min": budget, "seed": seed, "tta": tta, "tgs_map": metrics["tgs_map"],
             "iou": metrics["iou"], "epochs": epochs_done, "n_test": metrics["n_images"]}
    write_text(score_path, json.dumps(score))
    return score


def run_key(config: TrainConfig, folders: tuple[Path, Path]) -> dict[str, Any]:
    """What makes a run this run: its resolved config (`best` as the device resolves it; without the
    scratch data folder and the run folder, which name the place, not the run) and digests of its
    training and held-out image names."""
    plain = json.loads(json.dumps(to_dict(config)))  # tuples as lists, as a record read back has them
    del plain["out_dir"], plain["data"]["data_dir"]

    def digest(folder: Path) -> str:
        return hashlib.sha256("\n".join(sorted(p.name for p in (folder / "images").iterdir())).encode()).hexdigest()

    return {"config": plain, "train_images": digest(folders[0]), "held_out_images": digest(folders[1])}


def read_record(path: Path) -> dict[str, Any]:
    """A run's trained.json or score file; one line naming it when it is not JSON (a hand edit, a full disk)."""
    try:
        record = json.loads(path.read_text())
    except ValueError:  # not JSON, or not UTF-8
        record = None
    if not isinstance(record, dict) or "epochs" not in record:
        raise SystemExit(f"quality: {path} is not the JSON quality.py wrote; remove its run folder to redo it")
    return record


def check_same_run(recorded: dict[str, Any], key: dict[str, Any], out: Path) -> None:
    """Stop before a finished run of other images or another config is reused as this one (another
    --folds, --max-images or --data; `best` trained on another device; a recipe changed since). A config
    field only one side has is not a difference (fields are added over time); a record written before
    keys were kept has none and is trusted."""
    for images in ("train_images", "held_out_images"):
        if images in recorded and recorded[images] != key[images]:
            raise SystemExit(f"quality: {out} holds a run of other images (another --folds, --max-images or "
                             f"--data); give another --out")
    changed = _differing(recorded.get("config", {}), key["config"])
    if changed:
        raise SystemExit(f"quality: {out} holds a run of another config ({', '.join(changed[:3])} differ); "
                         f"give another --out")


def _differing(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields both mappings have with different values."""
    found = []
    for name in sorted(old.keys() & new.keys()):
        if isinstance(old[name], dict) and isinstance(new[name], dict):
            found += _differing(old[name], new[name], f"{prefix}{name}.")
        elif old[name] != new[name]:
            found.append(f"{prefix}{name}")
    return found


def summary(scores: list[dict[str, Any]]) -> dict[str, float]:
    """Mean and sample standard deviation of held-out mAP, mean IoU and epochs, over folds x seeds."""
    maps = [s["tgs_map"] for s in scores]
    return {"map": statistics.fmean(maps), "sd": statistics.stdev(maps) if len(maps) > 1 else 0.0,
            "iou": statistics.fmean(s["iou"] for s in scores), "epochs": statistics.fmean(s["epochs"] for s in scores),
            "n": len(scores)}


def table(results: dict[tuple[str, float], dict[str, float]], recipes: list[str], budgets: list[float],
          unit: str) -> str:
    """One line per recipe, one column group per budget: mAP mean ± sd (IoU, epochs)."""
    width = max(len(r) for r in recipes + ["recipe"])
    head = f"{'recipe':<{width}}" + "".join(f" | {f'{b:g} {unit}-min: mAP ± sd (IoU, epochs, n)':<42}" for b in budgets)
    head = head.rstrip()
    lines = [head, "-" * len(head)]
    for recipe in recipes:
        cells = []
        for budget in budgets:
            s = results.get((recipe, budget))
            cells.append((f" | {s['map']:.4f} ± {s['sd']:.4f} ({s['iou']:.3f}, {s['epochs']:.1f}, {s['n']})" if s
                          else " | no finished run").ljust(45))
        lines.append((f"{recipe:<{width}}" + "".join(cells)).rstrip())
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=TGS)
    parser.add_argument("--recipes", default="seed,fast,best", help="recipes and ablations, comma-separated "
                        f"(ablations: {', '.join(ABLATIONS)})")
    parser.add_argument("--budgets", default="10,30", help="training minutes per run, comma-separated (default 10,30)")
    parser.add_argument("--folds", type=int, default=2, help="coverage-stratified folds, each held out once")
    parser.add_argument("--fold", type=int, help="only this held-out fold (0-based): processes can run folds side by "
                        "side into one --out, and a later run without --fold reuses their scores")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per recipe, budget and fold (default 2)")
    parser.add_argument("--seed", type=int, help="only this seed (0-based), as --fold for folds")
    parser.add_argument("--max-images", type=int, help="a coverage-stratified subset of the data (quick looks)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--tta", default="none", choices=TTA_MODES, help="test-time augmentation of the held-out "
                        "scoring (default none); finished runs are scored again without training")
    parser.add_argument("--finished-only", action="store_true", help="train nothing: the table of the runs "
                        "already finished in --out (its n column says how many), the missing ones listed")
    parser.add_argument("--out", type=Path, default=Path("runs/quality"))
    parser.add_argument("--quick", action="store_true", help="smoke run in seconds: 24 synthetic 32 x 32 images, "
                        "one seed, a budget of 0.6 s and at most 2 epochs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[float, dict[str, float]]:
    """Run the table; returns {budget: {recipe: mean held-out mAP}} (recipes with a finished run)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quick else logging.INFO, format="%(message)s")
    recipes = [r for r in args.recipes.split(",") if r]
    if args.fold is not None and not 0 <= args.fold < args.folds:
        raise SystemExit(f"quality: --fold {args.fold} is not one of 0..{args.folds - 1}")
    if args.seed is not None and not 0 <= args.seed < args.seeds:
        raise SystemExit(f"quality: --seed {args.seed} is not one of 0..{args.seeds - 1}")
    for recipe in recipes:
        recipe_layer(recipe)  # unknown names stop here, before any training
    budgets = [0.01] if args.quick and args.budgets == "10,30" else [float(b) for b in args.budgets.split(",")]
    seeds, epochs = (1, 2) if args.quick else (args.seeds, None)
    unit = "gpu" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = generate_synthetic(Path(scratch) / "synthetic", 24, size=32, seed=7) if args.quick else args.data
        if not Path(data_dir).is_dir():
            raise SystemExit(f"quality: {data_dir} not found (this benchmark needs the TGS data, or --quick)")
        pairs = find_pairs(data_dir)
        strata = coverage_classes(load_labelled(data_dir, 1, 1, show_progress=False).coverage())
        chosen = np.arange(len(pairs))
        if args.max_images and args.max_images < len(pairs):
            chosen = stratified_split(strata, args.max_images / len(pairs), seed=0)[1]
        folds = [chosen[f] for f in stratified_folds(strata[chosen], args.folds, seed=0)]
        folders = [(link_subset(pairs, np.setdiff1d(chosen, held), Path(scratch) / f"fold{i}" / "train"),
                    link_subset(pairs, held, Path(scratch) / f"fold{i}" / "test")) for i, held in enumerate(folds)]
        results: dict[tuple[str, float], dict[str, float]] = {}
        for budget in budgets:
            for recipe in recipes:
                runs = {(f, seed): one_run(recipe, budget, folders[f], seed, args.out / f"{budget:g}min" / recipe /
                                           f"fold{f}_seed{seed}", args.device, epochs, args.tta, not args.finished_only)
                        for f in (range(len(folds)) if args.fold is None else [args.fold])
                        for seed in (range(seeds) if args.seed is None else [args.seed])}
                missing = [f"fold{f}_seed{seed}" for (f, seed), score in runs.items() if score is None]
                if missing:
                    print(f"{recipe} {budget:g} min: not finished: {', '.join(missing)}", flush=True)
                scores = [score for score in runs.values() if score is not None]
                if not scores:
                    continue
                results[(recipe, budget)] = summary(scores)
                print(f"{recipe} {budget:g} min: held-out mAP {results[(recipe, budget)]['map']:.4f}", flush=True)
    print(f"\nheld-out TGS mAP over {len(folds)} folds x {seeds} seeds ({len(chosen)} images, "
          f"{torch.get_num_threads()} threads, test-time augmentation {args.tta})")
    print(table(results, recipes, budgets, unit))
    for budget in budgets:
        if ("best", budget) in results and ("fast", budget) in results:
            best, fast = results[("best", budget)]["map"], results[("fast", budget)]["map"]
            print(f"quality: budget={budget:g}{unit} best_map={best:.4f} fast_map={fast:.4f} gain={best - fast:.4f}")
    return {b: {r: results[(r, b)]["map"] for r in recipes if (r, b) in results} for b in budgets}


if __name__ == "__main__":
    main()
