"""bf16 against fp32 prediction on a CPU: what bf16 changes in the masks and in the held-out figures.

For each trained model and its held-out labelled folder, `unetkit.evaluate` runs twice on the CPU,
`--precision fp32` and `--precision bf16`, through the same scorer (inference/evaluation.py). Per
set it prints the share of mask pixels whose decision differs (binary: the thresholded mask after
the model's post-processing; multi-class: the argmax class), the largest absolute difference of a
probability, the set's figures (benchmarks/quality_sets.py) in both precisions with the fp32
figure's 95% bootstrap interval over images (the noise a change of figure is compared with), and
the seconds of each evaluation (model load and first-call warm-up included). ISBI's membrane and
cell IoUs have no interval from evaluate (they come from one binary confusion); theirs is
bootstrapped here from per-image confusion counts. On a CPU without AVX512-BF16 or AMX, bf16 is
emulated: the masks still compare, the seconds do not.

    PYTHONPATH=src python benchmarks/prediction_precision.py \\
        --run tgs-salt RUNS/tgs-default/model.safetensors RUNS/tgs/test ...   # one --run per set

Last line per set: precision SET: flipped=F max_abs=D agree_ok=True|False figures_ok=True|False
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
from unetkit.runtime import has_bf16

AGREEMENT = 0.999  # the bar: masks agree on at least this share of pixels
INTERVAL_NAMES = {"drive-train": {"dice": "f1"}, "camvid-train": {"iou": "mean_iou"}}  # evaluate's -> the figure's


class Recorded:
    """Wraps an engine's `run` to keep, per image in order, its probabilities, mask and truth."""

    def __init__(self, engine: PredictionEngine) -> None:
        self.engine = engine
        self.items: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (probabilities, mask, truth)
        inner = engine.run

        def run(items: Iterable[tuple[Any, np.ndarray]], on_tiles: Any = None) -> Iterator[Any]:
            for key, image, probabilities in inner(items, on_tiles):
                _, truth = key
                self.items.append((probabilities, engine.to_mask(probabilities), truth))
                yield key, image, probabilities

        engine.run = run  # type: ignore[method-assign]


def evaluate(spec: QualitySet, model: str, data: Path, precision: str, out: Path) -> tuple[Recorded, dict[str, Any], float]:
    """(the recorded predictions, evaluate's figures, seconds) of one evaluation in one precision."""
    options = InferenceOptions(device="cpu", precision=precision)
    recorded = Recorded(open_predictor(model, options))
    config = EvaluateConfig(model_path=model, data_dir=str(data), device="cpu", precision=precision,
                            metrics=spec.measures, fov_dir=str(data / "fov") if spec.fov else "",
                            csv_path=str(out / f"{spec.name}-{precision}.csv"), overwrite=True)
    started = time.perf_counter()
    metrics = run_evaluation(config, recorded.engine).metrics
    return recorded, metrics, time.perf_counter() - started


def binary_counts(items: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """(N, 4) per-image tp, fp, fn, tn of binary masks against their truths."""
    rows = []
    for _, mask, truth in items:
        predicted, true = mask > 0, truth > 0
        rows.append([(predicted & true).sum(), (predicted & ~true).sum(), (~predicted & true).sum(),
                     (~predicted & ~true).sum()])
    return np.array(rows, dtype=np.float64)


def membrane_cell(counts: np.ndarray) -> tuple[float, float, float]:
    """(mean, membrane, cell IoU) of pooled tp, fp, fn, tn: the membranes are the background."""
    tp, fp, fn, tn = counts.sum(axis=0)
    membrane, cell = _iou(tn, fp + fn), _iou(tp, fp + fn)
    return (membrane + cell) / 2, membrane, cell


def _iou(hits: float, misses: float) -> float:
    """hits / (hits + misses); 1 where a class is in neither the masks nor the predictions (nothing missed)."""
    return float(hits / (hits + misses)) if hits + misses else 1.0


def bootstrap(counts: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95% intervals over images of the mean, membrane and cell IoUs (as evaluate's: images resampled)."""
    rng = np.random.default_rng(seed)
    draws = np.array([membrane_cell(counts[rng.integers(0, len(counts), len(counts))]) for _ in range(resamples)])
    return {name: (float(np.quantile(draws[:, i], 0.025)), float(np.quantile(draws[:, i], 0.975)))
            for i, name in enumerate(("mean_iou", "membrane_iou", "cell_iou"))}


def compare(spec: QualitySet, model: str, data: Path, out: Path) -> dict[str, Any]:
    """The agreement of bf16 with fp32 on one set, its figures in both precisions and their noise."""
    fp32, fp32_metrics, fp32_seconds = evaluate(spec, model, data, "fp32", out)
    bf16, bf16_metrics, bf16_seconds = evaluate(spec, model, data, "bf16", out)
    flipped = pixels = 0
    max_abs = 0.0
    for (p32, m32, _), (p16, m16, _) in zip(fp32.items, bf16.items, strict=True):
        flipped += int((m32 != m16).sum())
        pixels += m32.size
        max_abs = max(max_abs, float(np.abs(p32 - p16).max()))
    figures32, figures16 = spec.figures(fp32_metrics), spec.figures(bf16_metrics)
    names = INTERVAL_NAMES.get(spec.name, {})
    intervals = {names.get(k, k): tuple(v) for k, v in fp32_metrics["intervals"].items()}
    if spec.name == "isbi-train":
        counts32 = binary_counts(fp32.items)
        _, membrane, cell = membrane_cell(counts32)
        assert abs(cell - figures32["cell_iou"]) < 1e-9 and abs(membrane - figures32["membrane_iou"]) < 1e-6
        intervals |= bootstrap(counts32)
    rows = []
    for name, value in figures32.items():
        if name.startswith("iou_") or name == "hd95":
            continue  # per-class and distance figures: shown by quality.py, not part of this comparison
        low, high = intervals.get(name, (float("nan"), float("nan")))
        rows.append((name, value, figures16[name], low, high))
    figures_ok = all(abs(b - a) < (high - low) / 2 for _, a, b, low, high in rows if np.isfinite(low))
    return {"flipped": flipped / pixels, "pixels": pixels, "max_abs": max_abs, "rows": rows,
            "figures_ok": figures_ok, "seconds": (fp32_seconds, bf16_seconds), "n": len(fp32.items)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", nargs=3, action="append", metavar=("SET", "MODEL", "DATA"), required=True,
                        help=f"a set ({', '.join(SETS)}), its model file and held-out folder (images/, masks/[, fov/])")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"native bf16 on this CPU: {has_bf16(torch.device('cpu'))}; torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as folder:
        for name, model, data in args.run:
            spec = SETS[name]
            result = compare(spec, model, Path(data), Path(folder))
            seconds32, seconds16 = result["seconds"]
            print(f"\n{name}: {result['n']} images, {result['pixels']} pixels; evaluate fp32 {seconds32:.1f} s, "
                  f"bf16 {seconds16:.1f} s (ratio {seconds32 / seconds16:.2f})")
            print("| figure | fp32 | bf16 | change | fp32 95% interval | half-width |")
            print("|---|---|---|---|---|---|")
            for figure, a, b, low, high in result["rows"]:
                print(f"| {figure} | {a:.4f} | {b:.4f} | {b - a:+.4f} | [{low:.4f}, {high:.4f}] | {(high - low) / 2:.4f} |")
            print(f"precision {name}: flipped={result['flipped']:.6f} max_abs={result['max_abs']:.4f} "
                  f"agree_ok={1 - result['flipped'] >= AGREEMENT} figures_ok={result['figures_ok']}", flush=True)


if __name__ == "__main__":
    main()
