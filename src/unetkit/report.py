"""The run report: one self-contained HTML page (images embedded) showing how a training run went (a
K-fold run's: the out-of-fold figures and every fold side by side). Written with the standard library
(`html`, `base64`): one static page does not justify a template engine, and a page with no external
resource opens anywhere, offline, forever.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetkit.data import patch_set
from unetkit.data.fov import find_regions
from unetkit.data.pairing import DataSource, find_pairs
from unetkit.data.regions import image_size
from unetkit.errors import UserError
from unetkit.export import answer_calls
from unetkit.export.model_file import SavedModel, load_model
from unetkit.fileio import write_text
from unetkit.inference.predictor import Predictor
from unetkit.inference.scoring import accumulator_for, palette_for, scored_pairs
from unetkit.measures import RESAMPLES, MeasureSet, is_boundary, monitor_minimizes, parse_measures
from unetkit.visualize import label_map, overlay_sheet, plot_curves, pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_NAME = "report.html"
# body data-images="ok" when every picture decoded, else a red line on top, for the reader and `make
# test-browser`. Checked at the load event (a failed picture has no natural width by then): the promise
# of img.decode() settled after headless Chromium had already dumped the page, half the time.
_IMAGE_CHECK = """window.addEventListener("load", () => {
  const broken = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length;
  document.body.dataset.images = broken ? "broken" : "ok";
  if (broken) document.body.insertAdjacentHTML("afterbegin",
    `<p style="color:#b00">${broken} image(s) of this report could not be shown</p>`);
});"""
EXAMPLES = 4  # best and worst validation images shown


def read_table(path: Path, needed: tuple[str, ...]) -> tuple[list[dict[str, str]], list[dict[str, float]]]:
    """A CSV that training wrote, as its rows (the digits as written) and as numbers; anything else
    (edited by hand, truncated, another program's) is one line naming the file."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        numbers = [{k: float(v) for k, v in row.items()} for row in rows]
        missing = [name for name in needed if rows and name not in rows[0]]
        if not rows or missing:
            raise ValueError("no rows" if not rows else "no column " + ", ".join(missing))
    except (OSError, UnicodeDecodeError, csv.Error, TypeError, ValueError) as exc:
        raise UserError(f"{path}: not a table written by unetkit train ({exc})") from None
    return rows, numbers


def write_reports(run_dir: str | os.PathLike[str], *, device: str = "auto") -> Path:
    """RUN_DIR/report.html; for a --folds run, every fold's page first, then the out-of-fold page
    that links to them. Returns the top page's path."""
    run = Path(run_dir)
    metrics_path, model_path = run / "metrics.csv", run / "model.safetensors"
    if not metrics_path.is_file():
        for fold_dir in sorted(run.glob("fold_*/")):
            if (fold_dir / "metrics.csv").is_file() and (fold_dir / "model.safetensors").is_file():
                write_reports(fold_dir, device=device)
        if model_path.is_file() and any(run.glob("fold_*/metrics.csv")):
            return write_folds_report(run)
    if not metrics_path.is_file() or not model_path.is_file():
        raise UserError(f"{run}: not a finished training run (needs metrics.csv and model.safetensors)")
    rows, history = read_table(metrics_path, ("epoch", "val_loss", "val_iou"))
    saved = load_model(model_path)
    sections = [_summary(run, saved.training, saved.threshold, saved.postprocess, history),
                _figure_section("Training curves", plot_curves(history)),
                "<h2>Every epoch (metrics.csv)</h2>\n" + _table(rows, raw=True), _sweep_section(run, saved.threshold),
                _examples_section(run, saved, device), _config_section(run)]
    return _write_page(run, f"unetkit run {run.name}", sections)


def write_folds_report(run: Path) -> Path:
    """RUN_DIR/report.html of a K-fold run, its fold rows linking to the folds' own pages."""
    saved = load_model(run / "model.safetensors")
    record = saved.training
    oof = {k: v for k, v in (record.get("out_of_fold") or {}).items() if isinstance(v, int | float)}
    rule = {"threshold": saved.threshold} | dict(saved.postprocess)
    sections = [f"<p>Run folder <code>{html.escape(str(run))}</code>: {record.get('folds', '?')} folds, one "
                "ensemble model (the members' probabilities averaged).</p>",
                "<h2>Out of fold, at the tuned decision rule</h2>", _table([rule | oof] if oof else [])]
    monitor = (record.get("plan") or {}).get("monitor") or (record.get("config") or {}).get("monitor", "val_loss")
    folds, histories = [], {}
    chosen = min if monitor_minimizes(monitor) else max  # the epoch each fold kept (its best checkpoint)
    for table in sorted(run.glob("fold_*/metrics.csv"), key=lambda path: int(path.parent.name.split("_")[1])):
        fold = table.parent.name
        history = histories[fold] = read_table(table, ("epoch", "val_loss", "val_iou"))[1]
        best = chosen(history, key=lambda row: row[monitor])  # read_table refuses a table without rows
        link = f'<a href="{fold}/report.html">report</a>' if (table.parent / "report.html").is_file() else "no report"
        folds.append({"fold": fold, "epochs": len(history)} | best | {"epoch": int(best["epoch"]), "page": link})
    sections.append(f"<h2>Folds (best epoch by {html.escape(monitor)})</h2>\n" + _table(folds, markup=("page",)))
    if histories:
        figure, axes = pyplot().subplots(1, 2, figsize=(10, 3.4))
        for axis, key, label in zip(axes, ("val_loss", "val_iou"), ("validation loss", "validation IoU")):
            for name, history in histories.items():
                axis.plot([row["epoch"] for row in history], [row[key] for row in history], label=name)
            axis.set(xlabel="epoch", ylabel=label)
            axis.legend(fontsize=8)
        sections.append(_figure_section("Validation curves of every fold", figure))
    sections += [_sweep_section(run, saved.threshold, "out of fold"), _config_section(run)]
    return _write_page(run, f"unetkit cross-validation {run.name}", sections)


def _config_section(run: Path) -> str:
    text = (run / "config.yaml").read_text(encoding="utf-8") if (run / "config.yaml").is_file() else ""
    return f"<h2>Resolved config</h2>\n<pre>{html.escape(text)}</pre>"


def _write_page(run: Path, title: str, sections: list[str]) -> Path:
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "th{background:#f3f3f3}pre{background:#f7f7f7;padding:1em;overflow:auto}img{max-width:100%}"
             ".warning{background:#fff3f3;border-left:4px solid #b00;padding:.5em 1em;color:#700}")
    body = "\n".join(section for section in sections if section)
    write_text(run / REPORT_NAME, f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
               f"<title>{html.escape(title)}</title><style>{style}</style></head>\n<body>\n"
               f"<h1>{html.escape(title)}</h1>\n{body}\n<script>{_IMAGE_CHECK}</script>\n</body></html>\n")
    return run / REPORT_NAME


def _table(rows: list[dict[str, Any]], *, raw: bool = False, markup: tuple[str, ...] = ()) -> str:
    """An HTML table; `raw` keeps values exactly as given (metrics.csv's own digits); the columns in
    `markup` hold HTML written here (links) and are not escaped."""
    if not rows:
        return "<p>(none)</p>"

    def cell(key: str, value: Any) -> str:
        if key in markup:
            return str(value)
        if raw or not isinstance(value, float):
            return html.escape(str(value))
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.0f}"

    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{cell(k, v)}</td>" for k, v in row.items()) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _summary(run: Path, record: dict[str, Any], threshold: float, postprocess: dict[str, int],
             history: list[dict[str, float]]) -> str:
    best = record.get("best_epoch_metrics") or {}
    at_threshold = record.get("val_at_threshold") or record.get("out_of_fold") or {}
    lines = [*(f'<p class="warning">Warning: {html.escape(str(w))}</p>' for w in record.get("warnings") or []),
             f"<p>Run folder <code>{html.escape(str(run))}</code>: {len(history)} epochs, stopped by "
             f"{html.escape(str(record.get('stop_reason', 'n/a')))}.</p>",
             "<h2>Best epoch</h2>", _table([best] if best else [])]
    if at_threshold:
        row = {"threshold": threshold} | dict(postprocess) | {k: v for k, v in at_threshold.items() if isinstance(v, int | float)}
        lines += ["<h2>Validation at the tuned decision rule</h2>", _table([row])]
    return "\n".join(lines)


def _figure_section(title: str, figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    pyplot().close(figure)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<h2>{html.escape(title)}</h2>\n<img alt=\"{html.escape(title)}\" src=\"data:image/png;base64,{data}\">"


def _sweep_section(run: Path, threshold: float, scored_on: str = "validation") -> str:
    """The run's threshold_sweep.csv as a plot ("" when it has none)."""
    if not (run / "threshold_sweep.csv").is_file():
        return ""
    table = read_table(run / "threshold_sweep.csv", ("threshold",))[1]
    figure, axis = pyplot().subplots(figsize=(6, 3.2))
    for name in [k for k in table[0] if k != "threshold"]:
        axis.plot([r["threshold"] for r in table], [r[name] for r in table], label=name)
    axis.axvline(threshold, color="k", linestyle=":", label=f"chosen {threshold:.2f}")
    axis.set(xlabel="threshold")
    axis.legend(fontsize=8)
    return _figure_section(f"Threshold sweep ({scored_on})", figure)


def _examples_section(run: Path, saved: SavedModel, device: str) -> str:
    """Best and worst validation images by IoU, predicted now by the run's model."""
    split_path, title = run / "split.json", "Best and worst validation images by IoU"
    heading = f"<h2>{title}</h2>\n"
    config = saved.training.get("config") or {}
    source = DataSource.from_fields(config.get("data", {}))
    data_dir = str(source)
    if not split_path.is_file() or not data_dir or not Path(data_dir).exists():
        return f"{heading}<p>Not shown: the validation split or its data folder ({html.escape(data_dir)}) is missing.</p>"
    split = json.loads(split_path.read_text(encoding="utf-8"))  # folds: every image is held out once
    val_stems = set(split["val"] if "val" in split else [stem for fold in split.get("folds", []) for stem in fold])
    pairs = [pair for pair in find_pairs(source) if pair.stem in val_stems]
    # images too large to predict in memory (validated in windows during training) are left out here
    fits = [pair for pair in pairs if math.prod(image_size(pair.image)) <= patch_set.VAL_WHOLE_PIXELS]
    large, pairs, megapixels = len(pairs) - len(fits), fits, patch_set.VAL_WHOLE_PIXELS / 2**20
    left_out = f"; {large} over {megapixels:.0f} Mpx not shown" if large else ""
    if not pairs:
        return (f"{heading}<p>Not shown: the {large} validation image(s) are over {megapixels:.0f} Mpx, too large to "
                "predict whole here (training scored them in windows).</p>")
    predictor = Predictor(saved, device=device)
    palette = palette_for(saved, source)
    fov_dir = (config.get("data") or {}).get("fov_dir") or ""
    regions = find_regions(fov_dir, [pair.stem for pair in pairs]) if fov_dir and Path(fov_dir).is_dir() else None
    accumulator = accumulator_for(saved)
    measures = MeasureSet(parse_measures(",".join(filter(None, ["iou,dice,tgs_map", config.get("val_metrics")]))),
                          saved.config.num_classes, saved.config.multilabel, accumulator.ignore_index)
    # (iou, has an object, stem): among equal IoUs, "best" prefers images with something to find
    scores = sorted((float(item.row["iou"]), float(item.row["true_coverage"]) > 0, item.pair.stem)
                    for item in scored_pairs(predictor, pairs, accumulator, palette, regions=regions, measures=measures))
    worst = [stem for _, _, stem in scores[:EXAMPLES]]
    best = [stem for _, _, stem in scores[::-1][:EXAMPLES] if stem not in worst]
    chosen = [pair for stem in best + worst for pair in pairs if pair.stem == stem]
    # the chosen few are predicted again rather than every validation image kept in memory
    shown = list(scored_pairs(predictor, chosen, accumulator_for(saved), palette))
    iou = {stem: value for value, _, stem in scores}
    titles = [f"{'best' if item.pair.stem in best else 'worst'} {item.pair.stem} IoU {iou[item.pair.stem]:.3f}"
              for item in shown]
    figure = overlay_sheet([item.image for item in shown], [label_map(item.truth, channel_axis=-1) for item in shown],
                            [label_map(item.prediction) for item in shown], titles)
    return (_intervals_section(measures, len(pairs), fov_dir if regions else "") + _figure_section(title, figure)
            + f"\n<p>{'; '.join(html.escape(t) for t in titles)} (of {len(pairs)} validation images{left_out})</p>")


def _intervals_section(measures: MeasureSet, n_images: int, fov_dir: str) -> str:
    """The validation figures of the model file with their 95% bootstrap intervals over images."""
    figures, intervals = measures.summary(), measures.intervals(RESAMPLES)
    rows = [{"figure": name, "value": figures[name], "95% low": intervals[name][0], "95% high": intervals[name][1]}
            for name in measures.names if name in intervals]
    inside = f", inside the regions of <code>{html.escape(fov_dir)}</code>" if fov_dir else ""
    unit = " Distances and NSD tolerances in pixels." if any(is_boundary(name) for name in measures.names) else ""
    return ("<h2>Validation figures with 95% intervals</h2>\n"
            f"<p>The model file on the {n_images} validation images{inside}; percentile bootstrap over images, "
            f"{RESAMPLES} resamples, seed 0 (docs/metrics.md).{unit}</p>\n" + _table(rows) + "\n")


answer_calls(__name__, write_reports)
