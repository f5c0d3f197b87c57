"""Scoring a model on a labelled folder: data-set figures plus a per-image CSV.

Images are predicted exactly as `predict` would (inference/labelled.py). Under torchrun each
rank scores its share of the folder and every rank gets the figures of all; rank 0 writes
the CSV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from unetkit import distributed
from unetkit.config import EvaluateConfig
from unetkit.data.dataset import find_pairs
from unetkit.fileio import write_csv
from unetkit.inference.backends import open_predictor
from unetkit.inference.scoring import accumulator_for, palette_for, scored_pairs
from unetkit.metrics import MetricAccumulator
from unetkit.runtime import progress_hidden


@dataclass
class EvaluateResult:
    """Data-set figures (iou, dice, pixel_accuracy, tgs_map, n_images, ...) and the per-image CSV."""

    metrics: dict[str, Any]
    csv_path: Path


def run_evaluation(config: EvaluateConfig) -> EvaluateResult:
    """Score config.model_path on config.data_dir (see `unetkit.evaluate`)."""
    predictor = open_predictor(config.model_path, config)
    distributed.join(predictor.device.type)
    pairs = find_pairs(config.data_dir)
    accumulator = accumulator_for(predictor.saved)
    mine = pairs[distributed.rank() :: distributed.world_size()]
    scored = scored_pairs(predictor, mine, accumulator, palette_for(predictor.saved, config.data_dir))
    rows = [item.row for item in tqdm(scored, total=len(mine), desc="evaluate", unit="img", disable=progress_hidden(),
                                      leave=False)]
    if distributed.launched():
        shares = distributed.all_gather((rows, accumulator))
        accumulator = MetricAccumulator.merged([share for _, share in shares])
        place = {pair.stem: i for i, pair in enumerate(pairs)}
        rows = sorted((row for share, _ in shares for row in share), key=lambda row: place[row["stem"]])
    csv_path = Path(config.csv_path) if config.csv_path else (
        Path(config.model_path).parent / f"evaluation-{Path(config.data_dir).resolve().name}.csv")
    if distributed.is_main():
        write_csv(rows, csv_path)
    metrics = accumulator.summary() | {"threshold": predictor.threshold}
    return EvaluateResult(metrics, csv_path)
