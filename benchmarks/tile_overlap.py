"""Prediction tile and overlap: the held-out figures and the time of each tile x overlap on one set.

A trained model predicts its held-out labelled folder (fp32, on the CPU, no TTA) at every tile in
--tiles and overlap in --overlaps. Quality: the set's figures (benchmarks/quality_sets.py) through
`unetkit.evaluate`'s scorer, once per setting (the output is deterministic). Time: the prediction
alone (images already in memory, no scoring), every setting once per round, the settings taking
turns so that drift in the machine's load falls on all alike; the best of --rounds, and its ratio
to the reference setting (--reference, the defaults). Images no larger than a tile are predicted
whole, so a tile at least the images' size ignores the overlap.

    PYTHONPATH=src python benchmarks/tile_overlap.py --set drive-train \\
        --model RUNS/drive-default/model.safetensors --data RUNS/drive/test

Last line: tile_overlap SET: best=TILE/OVERLAP (the setting with the highest headline figure)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from quality_sets import SETS, QualitySet

from unetkit.config import EvaluateConfig, InferenceOptions
from unetkit.inference.backends import open_predictor
from unetkit.inference.engine import PredictionEngine
from unetkit.inference.evaluation import run_evaluation

Setting = tuple[int, float]  # (tile, overlap)


def keeping_images(engine: PredictionEngine, images: list[np.ndarray]) -> PredictionEngine:
    """`engine`, its `run` wrapped to append every image it predicts to `images` (for the timed rounds)."""
    inner = engine.run

    def run(items: Iterable[tuple[Any, np.ndarray]], on_tiles: Any = None) -> Iterator[Any]:
        for key, image, probabilities in inner(items, on_tiles):
            images.append(image)
            yield key, image, probabilities

    engine.run = run  # type: ignore[method-assign]
    return engine


def quality(spec: QualitySet, model: str, data: Path, setting: Setting, out: Path,
            images: list[np.ndarray]) -> dict[str, float]:
    """The set's figures at one tile and overlap (fills `images` when it is empty)."""
    tile, overlap = setting
    options = InferenceOptions(device="cpu", precision="fp32", tile=tile, overlap=overlap)
    engine = open_predictor(model, options)
    if not images:
        engine = keeping_images(engine, images)
    config = EvaluateConfig(model_path=model, data_dir=str(data), device="cpu", precision="fp32", tile=tile,
                            overlap=overlap, metrics=spec.measures, fov_dir=str(data / "fov") if spec.fov else "",
                            csv_path=str(out / f"{spec.name}.csv"), overwrite=True, resamples=0)
    return spec.figures(run_evaluation(config, engine).metrics)


def timed(engine: PredictionEngine, images: list[np.ndarray]) -> float:
    """Seconds to predict `images` (probabilities and masks) with `engine`."""
    started = time.perf_counter()
    for _, _, probabilities in engine.run(enumerate(images)):
        engine.to_mask(probabilities)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", required=True, choices=sorted(SETS), help="the set the model was trained on")
    parser.add_argument("--model", required=True, help="its model file")
    parser.add_argument("--data", required=True, type=Path, help="its held-out folder (images/, masks/[, fov/])")
    parser.add_argument("--tiles", default="256,512")
    parser.add_argument("--overlaps", default="0.5,0.25,0.125")
    parser.add_argument("--reference", default="256,0.25", help="TILE,OVERLAP the ratios are taken to")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = SETS[args.set]
    settings = [(int(t), float(o)) for t in args.tiles.split(",") for o in args.overlaps.split(",")]
    tile, overlap = args.reference.split(",")
    reference = (int(tile), float(overlap))
    images: list[np.ndarray] = []
    with tempfile.TemporaryDirectory() as folder:
        figures = {setting: quality(spec, args.model, args.data, setting, Path(folder), images)
                   for setting in settings}
    engines = {setting: open_predictor(args.model, InferenceOptions(device="cpu", precision="fp32", tile=setting[0],
                                                                     overlap=setting[1]))
               for setting in settings}
    timed(engines[reference], images[:1])  # warm-up: allocator, oneDNN kernels
    seconds: dict[Setting, list[float]] = {setting: [] for setting in settings}
    for _ in range(args.rounds):
        for setting, engine in engines.items():
            seconds[setting].append(timed(engine, images))
    best = {setting: min(values) for setting, values in seconds.items()}
    names = list(figures[settings[0]])
    print(f"{args.set}: {len(images)} images of {images[0].shape[1]}x{images[0].shape[0]}, "
          f"best of {args.rounds}, torch threads {torch.get_num_threads()}")
    print("| tile | overlap | tiles/image | " + " | ".join(names) + " | seconds | time ratio |")
    print("|---" * (len(names) + 5) + "|")
    for setting in settings:
        count = engines[setting].tile_count(*images[0].shape[:2])
        values = " | ".join(f"{figures[setting][name]:.4f}" for name in names)
        print(f"| {setting[0]} | {setting[1]} | {count} | {values} | {best[setting]:.2f} | "
              f"{best[setting] / best[reference]:.2f} |")
    top = max(settings, key=lambda setting: figures[setting][names[0]])
    print(f"tile_overlap {args.set}: best={top[0]}/{top[1]}", flush=True)


if __name__ == "__main__":
    main()
