"""Quality per minute: recipes (and a peer) x time budgets x held-out folds x seeds, on any of the four data sets.

`--data NAME` (tgs-salt, drive-train, isbi-train, camvid-train in ../shared/data, or a folder) picks
the set, its fixed split into held-out folds, its training fields and its figures
(benchmarks/quality_sets.py): TGS mAP and IoU; DRIVE F1, ROC AUC and HD95 inside fov/; ISBI
membrane, cell and mean IoU; CamVid mean and per-class IoU. Each run trains on the pairs outside
its held-out fold (with its own validation split inside them) for a budget of training minutes and
is scored on the held-out fold by `unetkit.evaluate`'s scorer. The table gives per recipe the mean
(± sample standard deviation over folds x seeds) of each figure, the epochs the budget allowed and
the wall-clock minutes of the training call; one table per set and budget, printed and written to
OUT/table.md.

Rows (`--recipes`): `default` (no recipe given: what `unetkit train --data D --out R --time-budget
B` trains), training/recipes.py's recipes (`best` is the device's own), the ablations below (a
recipe with one thing changed), and `smp`, the peer (benchmarks/peer_smp.py): an smp
`Unet("resnet18", encoder_weights=None)` trained as its users train it for the same minutes on the
same pairs, predicted through unetkit's engine and scored by the same function as unetkit's models
(inference/evaluation.py's run_evaluation). On tgs-salt the named recipes tune their threshold for
TGS mAP, as this table always did (unetkit's default tunes for IoU); `default` is left as a new
user gets it.

A finished run folder is reused once its record (trained.json: the resolved config and digests of
the image names) matches the run asked for, and a killed unetkit run resumes from its checkpoint
(a killed peer starts again), so a long table can be finished in pieces. Last lines, one per
budget: the default against the peer, and on tgs-salt `best` against `fast` (issue 13's targets):
quality: data=NAME budget=10cpu FIGURE default=X smp=Y lead=Z
quality: budget=10cpu best_map=X fast_map=Y gain=Z

    python benchmarks/quality.py --data drive-train            # its default rows, budget and split
    python benchmarks/quality.py --data tgs-salt --recipes fast,best --budgets 10,30 --seeds 2
    python benchmarks/quality.py --recipes fast,best --budgets 10 --tta hflip   # the same runs, rescored
    python benchmarks/quality.py --quick --data camvid-train   # seconds, a synthetic stand-in: the smoke test's run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peer_smp import WEIGHTS, PeerConfig, PeerEngine, import_smp, train_peer
from quality_sets import SETS, QualitySet, find_set, held_out_folds, synthetic_like

from unetkit.api import train
from unetkit.config import EvaluateConfig, TrainConfig, to_dict
from unetkit.data.pairing import Pair, find_pairs
from unetkit.fileio import write_text
from unetkit.inference.evaluation import run_evaluation
from unetkit.inference.tta import TTA_MODES
from unetkit.training.recipes import RECIPES, resolve_train_config

PEER = "smp"
DEFAULT = "default"

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
    # the CPU's `best` at the seed's width, for sets with more to learn than TGS (classes, thin structures)
    "best-cpu-width-16": ("best-cpu", {"model": {"start_neurons": 16}}),
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
    """The config layer of `default` (none), a recipe or an ablation name."""
    if name == DEFAULT:
        return {}
    if name in RECIPES:
        return {"recipe": name}
    if name in ABLATIONS:
        base, layer = ABLATIONS[name]
        return {"recipe": base, **layer}
    raise SystemExit(f"quality: unknown recipe '{name}' (default, {PEER}, recipes: {', '.join(RECIPES)}; "
                     f"ablations: {', '.join(ABLATIONS)})")


class Run:
    """One row's run on one held-out fold with one seed: where it lives and what it is scored with."""

    def __init__(self, spec: QualitySet, data: Path, folders: tuple[Path, Path], budget: float, seed: int,
                 out: Path, device: str, epochs: int | None) -> None:
        self.spec, self.data, self.folders, self.budget, self.seed = spec, data, folders, budget, seed
        self.out, self.device, self.epochs = out, device, epochs

    def evaluate_config(self, model_path: Path, tta: str) -> EvaluateConfig:
        """evaluate's options for this set: its measures, inside its regions, no bootstrap (the table's
        spread is over runs)."""
        return EvaluateConfig(model_path=str(model_path), data_dir=str(self.folders[1]), tta=tta, device=self.device,
                              csv_path=str(self.out / f"held_out-{tta}.csv"), overwrite=True, metrics=self.spec.measures,
                              fov_dir=str(self.data / "fov") if self.spec.fov else "", resamples=0)

    def digests(self) -> dict[str, str]:
        def digest(folder: Path) -> str:
            return hashlib.sha256("\n".join(sorted(p.name for p in (folder / "images").iterdir())).encode()).hexdigest()

        return {"train_images": digest(self.folders[0]), "held_out_images": digest(self.folders[1])}


def unetkit_run(recipe: str, run: Run, tta: str, train_missing: bool) -> dict[str, Any] | None:
    """Train `recipe` (or the default) on the run's training folder and score it on its held-out one."""
    layer = recipe_layer(recipe)
    for key, value in [*run.spec.train_layer().items(), ("data", {"data_dir": str(run.folders[0])})]:
        layer[key] = {**layer.get(key, {}), **value}  # a section of the recipe's layer keeps its other fields
    layer |= {"out_dir": str(run.out), "time_budget_min": run.budget, "seed": run.seed,
              "runtime": {"device": run.device}}
    if run.spec.tgs_threshold and recipe != DEFAULT:
        layer["decision"] = {"threshold_metric": "tgs_map"}
    if run.epochs is not None:
        layer["epochs"] = run.epochs
    config = resolve_train_config(layer)

    def fit() -> dict[str, Any]:
        started = time.monotonic()
        epochs = train(config, resume=(run.out / "checkpoints" / "last.safetensors").is_file()).epochs_done
        return {"epochs": epochs, "minutes": (time.monotonic() - started) / 60}

    def score(tta: str) -> dict[str, Any]:
        from unetkit.api import evaluate

        return evaluate(run.evaluate_config(run.out / "model.safetensors", tta)).metrics

    return scored_run(recipe, run, run_key(config, run), fit, score, tta, train_missing)


def peer_run(run: Run, tta: str, train_missing: bool) -> dict[str, Any] | None:
    """Train the smp peer on the run's training folder and score it through evaluate's scorer."""
    spec, peer = run.spec, PeerConfig()
    settings = {"num_classes": spec.num_classes, "ignore_index": spec.ignore_index}
    key = {"config": {"peer": PEER, "smp": import_smp().__version__, **asdict(peer), **settings,
                      "time_budget_min": run.budget, "seed": run.seed, "max_epochs": run.epochs}, **run.digests()}

    def fit() -> dict[str, Any]:
        return train_peer(run.folders[0], run.out, budget_min=run.budget, seed=run.seed, config=peer,
                          max_epochs=run.epochs, device=run.device, **settings)

    def score(tta: str) -> dict[str, Any]:
        options = run.evaluate_config(run.out / WEIGHTS, tta)
        return run_evaluation(options, predictor=PeerEngine(run.out, options=options, config=peer, **settings)).metrics

    return scored_run(PEER, run, key, fit, score, tta, train_missing)


def scored_run(recipe: str, run: Run, key: dict[str, Any], fit: Callable[[], dict[str, Any]],
               score: Callable[[str], dict[str, Any]], tta: str, train_missing: bool) -> dict[str, Any] | None:
    """The run's score: reused when scored, else scored after `fit` (skipped once trained.json says it
    trained this very run, `check_same_run`). None for a run not finished when `train_missing` is off."""
    out = run.out
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
        record = fit()
        write_text(out / "trained.json", json.dumps({**record, **key}))
    metrics = score(tta)
    result = {"recipe": recipe, "budget_min": run.budget, "seed": run.seed, "tta": tta, "epochs": record["epochs"],
              "minutes": record.get("minutes"), "n_test": metrics["n_images"], **run.spec.figures(metrics)}
    write_text(score_path, json.dumps(result))
    return result


def run_key(config: TrainConfig, run: Run) -> dict[str, Any]:
    """What makes a run this run: its resolved config (`best` as the device resolves it; without the
    scratch data folder and the run folder, which name the place, not the run) and digests of its
    training and held-out image names."""
    plain = json.loads(json.dumps(to_dict(config)))  # tuples as lists, as a record read back has them
    del plain["out_dir"], plain["data"]["data_dir"]
    return {"config": plain, **run.digests()}


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


def summary(scores: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Per figure the mean and sample standard deviation over folds x seeds; mean epochs and minutes."""
    out: dict[str, Any] = {"n": len(scores), "epochs": statistics.fmean(s["epochs"] for s in scores)}
    minutes = [s["minutes"] for s in scores if s.get("minutes") is not None]
    out["minutes"] = statistics.fmean(minutes) if len(minutes) == len(scores) else None
    for name in names:
        values = [s[name] for s in scores]
        out[name] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
    return out


def table(results: dict[str, dict[str, Any]], recipes: list[str], names: list[str]) -> str:
    """Markdown: one row per recipe; each figure as mean ± sd (sd over folds x seeds), epochs, minutes, runs."""
    lines = ["| recipe | " + " | ".join(names) + " | epochs | minutes | n |",
             "| --- |" + " --- |" * (len(names) + 3)]
    for recipe in recipes:
        s = results.get(recipe)
        if s is None:
            lines.append(f"| {recipe} |" + " |" * len(names) + " | | 0 |")
            continue
        cells = [f"{s[n][0]:.4f} ± {s[n][1]:.4f}" if s["n"] > 1 else f"{s[n][0]:.4f}" for n in names]
        minutes = f"{s['minutes']:.1f}" if s["minutes"] is not None else "–"
        lines.append(f"| {recipe} | " + " | ".join(cells) + f" | {s['epochs']:.1f} | {minutes} | {s['n']} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", default="tgs-salt", help=f"a set ({', '.join(SETS)}) or a folder (default tgs-salt)")
    parser.add_argument("--recipes", help=f"rows, comma-separated: {DEFAULT}, {PEER}, recipes, ablations "
                        f"({', '.join(ABLATIONS)}); default: the set's (default,best,smp; camvid-train adds fast)")
    parser.add_argument("--budgets", help="training minutes per run, comma-separated (default: the set's, 10; "
                        "camvid-train 15)")
    parser.add_argument("--folds", type=int, help="cross-validation: this many folds, each held out once (default: "
                        "the set's fixed split: tgs-salt's 2 folds each held out; the others fold 0 of 5)")
    parser.add_argument("--fold", type=int, help="only this held-out fold (0-based): processes can run folds side by "
                        "side into one --out, and a later run without --fold reuses their scores")
    parser.add_argument("--seeds", type=int, help="seeds per recipe, budget and fold (default: 2 on tgs-salt, else 1)")
    parser.add_argument("--seed", type=int, help="only this seed (0-based), as --fold for folds")
    parser.add_argument("--max-images", type=int, help="a coverage-stratified subset of the data (quick looks)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--tta", default="none", choices=TTA_MODES, help="test-time augmentation of the held-out "
                        "scoring (default none); finished runs are scored again without training")
    parser.add_argument("--finished-only", action="store_true", help="train nothing: the table of the runs "
                        "already finished in --out (its n column says how many), the missing ones listed")
    parser.add_argument("--out", type=Path, help="run folders and table.md (default runs/quality on tgs-salt, "
                        "else runs/quality-NAME)")
    parser.add_argument("--quick", action="store_true", help="smoke run in seconds: 24 synthetic 32 x 32 images "
                        "shaped like the set, one seed, a budget of 0.6 s and at most 2 epochs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[float, dict[str, float]]:
    """Run the table; returns {budget: {recipe: mean of the set's first figure}} (recipes with a finished run)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quick else logging.INFO, format="%(message)s")
    spec, data = find_set(args.data)
    recipes = [r for r in (args.recipes or spec.recipes).split(",") if r]
    folds = args.folds or spec.folds
    seeds = args.seeds or (2 if spec.name == "tgs-salt" else 1)
    if args.fold is not None and not 0 <= args.fold < folds:
        raise SystemExit(f"quality: --fold {args.fold} is not one of 0..{folds - 1}")
    if args.seed is not None and not 0 <= args.seed < seeds:
        raise SystemExit(f"quality: --seed {args.seed} is not one of 0..{seeds - 1}")
    seeds = 1 if args.quick else seeds
    for recipe in recipes:
        if recipe != PEER:
            recipe_layer(recipe)  # unknown names stop here, before any training
    if PEER in recipes:
        import_smp()  # a missing smp stops here too
    budgets = [0.01] if args.quick and not args.budgets else [float(b) for b in (args.budgets or str(spec.budget_min)).split(",")]
    unit = "gpu" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    out_root = args.out or Path("runs/quality" if spec.name == "tgs-salt" else f"runs/quality-{spec.name}")
    sections, means = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        if args.quick:
            data = synthetic_like(spec, Path(scratch) / "synthetic")
        if not data.is_dir():
            raise SystemExit(f"quality: {data} not found (this benchmark needs the data set, or --quick)")
        pairs = find_pairs(data)
        chosen, held = held_out_folds(spec, pairs, folds, args.max_images)
        selected = [args.fold] if args.fold is not None else (
            list(spec.held_out) if args.folds is None and spec.held_out is not None else list(range(folds)))
        folders = {f: (link_subset(pairs, np.setdiff1d(chosen, held[f]), Path(scratch) / f"fold{f}" / "train"),
                       link_subset(pairs, held[f], Path(scratch) / f"fold{f}" / "test")) for f in selected}
        names: list[str] = []
        for budget in budgets:
            results: dict[str, dict[str, Any]] = {}
            for recipe in recipes:
                scores = {}
                for f in selected:
                    for seed in range(seeds) if args.seed is None else [args.seed]:
                        run = Run(spec, data, folders[f], budget, seed, out_root / f"{budget:g}min" / recipe /
                                  f"fold{f}_seed{seed}", args.device, 2 if args.quick else None)
                        scores[f"fold{f}_seed{seed}"] = (peer_run(run, args.tta, not args.finished_only) if recipe == PEER
                                                         else unetkit_run(recipe, run, args.tta, not args.finished_only))
                missing = [name for name, score in scores.items() if score is None]
                if missing:
                    print(f"{recipe} {budget:g} min: not finished: {', '.join(missing)}", flush=True)
                done = [score for score in scores.values() if score is not None]
                if not done:
                    continue
                names = names or [k for k in done[0] if k not in
                                  ("recipe", "budget_min", "seed", "tta", "epochs", "minutes", "n_test")]
                results[recipe] = summary(done, names)
                print(f"{recipe} {budget:g} min: held-out {names[0]} {results[recipe][names[0]][0]:.4f}", flush=True)
            means[budget] = {r: results[r][names[0]][0] for r in recipes if r in results}
            n_test = len(held[selected[0]])
            sections.append((budget, f"## {spec.name}, {budget:g} {unit}-minutes\n\nheld-out folds {selected} of {folds} "
                             f"({n_test} images each, {len(chosen)} in all), {seeds} seed(s), {torch.get_num_threads()} "
                             f"threads, test-time augmentation {args.tta}\n\n" + table(results, recipes, names)))
    text = "\n\n".join(section for _, section in sections) + "\n"
    print("\n" + text)
    out_root.mkdir(parents=True, exist_ok=True)
    write_text(out_root / "table.md", text)
    for budget in budgets:
        row, figure = means[budget], names[0] if names else ""
        if DEFAULT in row and PEER in row:
            print(f"quality: data={spec.name} budget={budget:g}{unit} {figure} default={row[DEFAULT]:.4f} "
                  f"{PEER}={row[PEER]:.4f} lead={row[DEFAULT] - row[PEER]:.4f}")
    for budget in budgets:
        row = means[budget]
        if spec.name == "tgs-salt" and "best" in row and "fast" in row:
            best, fast = row["best"], row["fast"]
            print(f"quality: budget={budget:g}{unit} best_map={best:.4f} fast_map={fast:.4f} gain={best - fast:.4f}")
    return means


if __name__ == "__main__":
    main()
