"""Scoring a model on a labelled folder: data-set figures plus a per-image CSV.

Images are predicted exactly as `predict` would (inference/labelled.py). Under torchrun each
rank scores its share of the folder and every rank gets the figures of all; rank 0 writes
the CSV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetkit import distributed
from unetkit.config import EvaluateConfig
from unetkit.data.pairing import DataSource, find_pairs
from unetkit.errors import UserError
from unetkit.fileio import check_output, write_csv
from unetkit.inference.backends import open_predictor
from unetkit.inference.scoring import accumulator_for, palette_for, scored_pairs
from unetkit.metrics import MetricAccumulator
from unetkit.runtime import progress


@dataclass
class EvaluateResult:
    """Data-set figures (iou, dice, pixel_accuracy, tgs_map, n_images, ...) and the per-image CSV."""

    metrics: dict[str, Any]
    csv_path: Path


def run_evaluation(config: EvaluateConfig) -> EvaluateResult:
    """Score config.model_path on the labelled data config names (see `unetkit.evaluate`)."""
    source = DataSource.from_fields(config)
    if not source:
        raise UserError("no labelled data given (--data DIR, --images DIR with --masks DIR, or --pairs FILE.csv)")
    predictor = open_predictor(config.model_path, config)
    pairs = find_pairs(source)
    csv_path = Path(config.csv_path or f"evaluation-{Path(str(source)).resolve().stem}.csv")
    inputs = [Path(config.model_path), *(path for pair in pairs for path in (pair.image, pair.mask))]
    check_output(csv_path, inputs, overwrite=config.overwrite, ours=_is_evaluation_csv, flag="--csv")
    distributed.join(predictor.device.type)
    accumulator = accumulator_for(predictor.saved)
    mine = pairs[distributed.rank() :: distributed.world_size()]
    scored = scored_pairs(predictor, mine, accumulator, palette_for(predictor.saved, source))
    rows = [item.row for item in progress(scored, total=len(mine), desc="evaluate", unit="img", leave=False)]
    if distributed.launched():
        shares = distributed.all_gather((rows, accumulator))
        accumulator = MetricAccumulator.merged([share for _, share in shares])
        place = {pair.stem: i for i, pair in enumerate(pairs)}
        rows = sorted((row for share, _ in shares for row in share), key=lambda row: place[row["stem"]])
    if distributed.is_main():
        write_csv(rows, csv_path)
    metrics = accumulator.summary() | {"threshold": predictor.threshold}
    return EvaluateResult(metrics, csv_path)


def _is_evaluation_csv(path: Path) -> bool:
    """An earlier evaluate wrote it: its header is the per-image CSV's."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return handle.readline().startswith("stem,iou,dice")
    except OSError:
        return False
