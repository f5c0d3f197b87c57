"""Scoring a model on a labelled folder: data-set figures plus a per-image CSV.

Images are predicted exactly as `predict` would (inference/labelled.py); the figures are the chosen
measures (measures.py: per class and pooled, with a 95% bootstrap interval), inside the region masks
of `fov_dir` when given. Under torchrun each rank scores its share and every rank gets the figures of
all; rank 0 writes the CSV. Distances are in the unit of the pixel sizes (`--spacing`, else each
file's own, data/spacing.py), named in the CSV and the figures (`distance_unit`). The CSV has one row
per image, then the data-set figure (stem `#all`) and the interval's ends (`#ci95_low`, `#ci95_high`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetkit import distributed
from unetkit.config import EvaluateConfig
from unetkit.data.fov import find_regions
from unetkit.data.pairing import DataSource, find_pairs
from unetkit.data.spacing import PixelSpacing, parse_spacing, spacings_for
from unetkit.errors import UserError
from unetkit.fileio import check_output, write_csv
from unetkit.inference.backends import open_predictor
from unetkit.inference.engine import PredictionEngine
from unetkit.inference.scoring import accumulator_for, palette_for, scored_pairs
from unetkit.measures import MeasureSet, is_boundary, parse_measures
from unetkit.metrics import MetricAccumulator
from unetkit.runtime import progress

DEFAULT_MEASURES = "iou,dice,tgs_map"
SUMMARY_STEMS = ("#all", "#ci95_low", "#ci95_high")


@dataclass
class EvaluateResult:
    """Data-set figures (iou, dice, pixel_accuracy, tgs_map, n_images, ...) and the per-image CSV."""

    metrics: dict[str, Any]
    csv_path: Path


def run_evaluation(config: EvaluateConfig, predictor: PredictionEngine | None = None) -> EvaluateResult:
    """Score config.model_path on the labelled data config names (see `unetkit.evaluate`). `predictor`: an
    engine already open for it (benchmarks/quality.py scores its peer network here, so both get one scorer)."""
    source = DataSource.from_fields(config)
    if not source:
        raise UserError("no labelled data given (--data DIR, --images DIR with --masks DIR, or --pairs FILE.csv)")
    names = parse_measures(config.metrics or DEFAULT_MEASURES)
    distances = any(is_boundary(name) for name in names)
    given = parse_spacing(config.spacing) if config.spacing else None
    if given is not None and not distances:
        raise UserError(f"--spacing {config.spacing}: no distance figure chosen to take it (hd95, assd or nsd@TOL "
                        "in --metrics)")
    if config.track == "mlflow":
        from unetkit.tracking import require_mlflow

        require_mlflow()  # a missing package is one line before any work
    predictor = predictor or open_predictor(config.model_path, config)
    pairs = find_pairs(source)
    regions = find_regions(config.fov_dir, [pair.stem for pair in pairs]) if config.fov_dir else None
    spacings, unit = spacings_for(pairs, given) if distances else ({}, "")
    csv_path = Path(config.csv_path or f"evaluation-{Path(str(source)).resolve().stem}.csv")
    check_output(csv_path, [Path(config.model_path), *(path for pair in pairs for path in (pair.image, pair.mask)),
                            *(regions or {}).values()], overwrite=config.overwrite, ours=_is_evaluation_csv, flag="--csv")
    distributed.join(predictor.device.type)
    accumulator = accumulator_for(predictor.saved)
    model = predictor.saved.config
    measures = MeasureSet(names, model.num_classes, model.multilabel, accumulator.ignore_index)
    mine = pairs[distributed.rank() :: distributed.world_size()]
    scored = scored_pairs(predictor, mine, accumulator, palette_for(predictor.saved, source), regions=regions,
                          measures=measures, spacings={stem: spacing.yx for stem, spacing in spacings.items()})
    rows = [item.row | _spacing_columns(spacings.get(item.pair.stem))
            for item in progress(scored, total=len(mine), desc="evaluate", unit="img", leave=False)]
    if distributed.launched():
        shares = distributed.all_gather((rows, accumulator, measures))
        accumulator = MetricAccumulator.merged([share for _, share, _ in shares])
        place = {pair.stem: i for i, pair in enumerate(pairs)}
        measures = MeasureSet.merged([share for _, _, share in shares],
                                     [place[row["stem"]] for share, _, _ in shares for row in share])
        rows = sorted((row for share, _, _ in shares for row in share), key=lambda row: place[row["stem"]])
    figures = measures.summary()
    intervals = measures.intervals(config.resamples, config.seed) if config.resamples else {}
    if distributed.is_main():
        write_csv(rows + _summary_rows(rows, figures, intervals, unit), csv_path)
    metrics = accumulator.summary() | figures | {"threshold": predictor.threshold, "measures": list(names),
                                                 "intervals": {k: list(v) for k, v in intervals.items()}}
    metrics |= {"distance_unit": unit} if distances else {}
    if config.track == "mlflow" and distributed.is_main():
        from unetkit.tracking import log_evaluation

        metrics["mlflow_run_id"] = log_evaluation(config.run_id, metrics, csv_path, f"evaluate {csv_path.stem}",
                                                  Path(config.model_path).parent)
    return EvaluateResult(metrics, csv_path)


def _spacing_columns(spacing: PixelSpacing | None) -> dict[str, Any]:
    """The CSV columns that say in what unit an image's distances are (none without distance figures)."""
    return {} if spacing is None else {"distance_unit": spacing.unit, "spacing_dy": spacing.dy,
                                       "spacing_dx": spacing.dx}


def _summary_rows(rows: list[dict[str, Any]], figures: dict[str, Any], intervals: dict[str, tuple[float, float]],
                  unit: str) -> list[dict[str, Any]]:
    """The CSV's last rows: the data-set figure and the interval's ends, in the per-image columns
    (tgs_map under tgs_score), with the distance unit; columns without a data-set figure stay empty."""
    columns = list(rows[0]) if rows else ["stem"]
    values = ({k: v for k, v in figures.items() if isinstance(v, float)}, {k: low for k, (low, _) in intervals.items()},
              {k: high for k, (_, high) in intervals.items()})
    out = []
    for stem, named in zip(SUMMARY_STEMS, values):
        row: dict[str, Any] = dict.fromkeys(columns, "") | {"stem": stem}
        named = {"tgs_score" if name == "tgs_map" else name: value for name, value in named.items()}
        out.append(row | {column: value for column, value in named.items() if column in row}
                   | ({"distance_unit": unit} if "distance_unit" in row else {}))
    return out


def _is_evaluation_csv(path: Path) -> bool:
    """An earlier evaluate wrote it: its header is the per-image CSV's."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return handle.readline().startswith("stem,iou,dice")
    except OSError:
        return False
