"""MLflow tracking (`runtime.track: mlflow`, `--track mlflow`): the run folder, mirrored into the tracker
a team already runs (what is logged, and where runs go without a server: docs/metrics.md).

The run folder stays the record: the tracker only copies it. A tracker that cannot be reached is
one warning, then silence, and training goes on; hence the broad `except Exception` around every
MLflow call (it raises its own, requests' and the store's exceptions). MLflow's HTTP retries default
to minutes of back-off; unless the environment sets them, HTTP_DEFAULTS' quick retries apply.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from unetkit.data.io import first_line
from unetkit.errors import UserError
from unetkit.fileio import write_text
from unetkit.runtime import log

RECORD = "mlflow.json"  # RUN_DIR/mlflow.json: {"run_id", "tracking_uri"}
LOCAL_STORE = "mlruns"  # the local store's folder, in the current folder, when no tracking URI is set
LOCAL_DATABASE = "mlflow.db"  # its SQLite database, inside LOCAL_STORE
EXPERIMENT = "unetkit"  # the experiment runs go to, unless MLFLOW_EXPERIMENT_NAME says another
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}  # seconds
RUN_ARTIFACTS = ("model.safetensors", "report.html", "curves.png", "config.yaml", "plan.json", "threshold_sweep.csv",
                 "metrics.csv")
_FAILED: set[str] = set()  # tracking URIs that failed in this process: warned once, then skipped


def require_mlflow() -> Any:
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        import mlflow
    except ImportError:
        raise UserError("--track mlflow needs the mlflow package: pip install 'unetkit[mlflow]'") from None
    return mlflow


def tracking_uri(mlflow: Any) -> str:
    """The tracking URI set (MLFLOW_TRACKING_URI, mlflow.set_tracking_uri), else the local store's:
    sqlite:///CWD/mlruns/mlflow.db (absolute, so a later --resume from elsewhere finds the same store)."""
    if mlflow.is_tracking_uri_set():
        return str(mlflow.get_tracking_uri())
    return f"sqlite:///{(Path.cwd() / LOCAL_STORE / LOCAL_DATABASE).as_posix()}"


def flat_params(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config data as MLflow parameters: dotted names, values as text (MLflow stores text)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        out |= flat_params(value, f"{prefix}{key}.") if isinstance(value, dict) and value else {f"{prefix}{key}": str(value)}
    return out


class Tracker:
    """One MLflow run, by id; every call is skipped once its tracking URI has failed in this process."""

    def __init__(self, client: Any, run_id: str, uri: str) -> None:
        self.client, self.run_id, self.uri = client, run_id, uri

    @classmethod
    def open(cls, run_id: str = "", name: str = "", tags: dict[str, str] | None = None, uri: str = "") -> Tracker | None:
        """Run `run_id` (or a new run named `name` in the EXPERIMENT) at `uri` (default `tracking_uri()`);
        None when the tracker is unreachable."""
        mlflow = require_mlflow()
        tracker = cls(None, run_id, uri or tracking_uri(mlflow))

        def connect() -> None:
            folder = Path(tracker.uri.removeprefix("sqlite:///")).parent
            local = tracker.uri.startswith("sqlite:///") and tracker.uri.endswith(f"/{LOCAL_STORE}/{LOCAL_DATABASE}")
            if local:  # SQLite creates a database file, not its folder
                folder.mkdir(parents=True, exist_ok=True)
            tracker.client = mlflow.MlflowClient(tracker.uri)
            if run_id:
                tracker.client.get_run(run_id)  # fails here for an unknown id
                return
            experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
            found = tracker.client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else tracker.client.create_experiment(
                experiment, artifact_location=(folder / experiment).as_uri() if local else None)
            tracker.run_id = tracker.client.create_run(experiment_id, run_name=name or None, tags=tags or {}).info.run_id

        return tracker if tracker._guard(connect) else None

    def _guard(self, call: Callable[[], Any]) -> bool:
        """Run `call`; on any failure warn once for this URI and stop tracking there."""
        if self.uri in _FAILED:
            return False
        try:
            call()
            return True
        except Exception as exc:  # noqa: BLE001 -- a tracker must never stop the work it records
            _FAILED.add(self.uri)
            log.warning("warning: MLflow tracking at %s failed (%s); tracking stops here, the run folder keeps "
                        "everything", self.uri, first_line(exc)[:200])
            return False

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        self._guard(lambda: [self.client.log_batch(self.run_id, params=items[i : i + 100]) for i in range(0, len(items), 100)])

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        items = [Metric(k, float(v), stamp, step) for k, v in values.items()]
        self._guard(lambda: self.client.log_batch(self.run_id, metrics=items))

    def log_artifacts(self, paths: Iterable[Path]) -> None:
        for path in filter(Path.is_file, paths):
            self._guard(lambda path=path: self.client.log_artifact(self.run_id, str(path)))

    def finish(self) -> None:
        self._guard(lambda: self.client.set_terminated(self.run_id, "FINISHED"))


def start_training(run_dir: Path, config_data: dict[str, Any]) -> Tracker | None:
    """The MLflow run of the training in `run_dir`: the one RUN_DIR/mlflow.json names (--resume), else a
    new one with the resolved config as parameters, recorded in mlflow.json."""
    record = _read_record(run_dir)
    if record.get("run_id"):
        return Tracker.open(record["run_id"], uri=str(record.get("tracking_uri") or ""))
    tracker = Tracker.open(name=run_dir.resolve().name, tags={"unetkit.run_dir": str(run_dir.resolve())})
    if tracker is not None:
        write_text(run_dir / RECORD, json.dumps({"run_id": tracker.run_id, "tracking_uri": tracker.uri}, indent=1))
        tracker.log_params(flat_params(json.loads(json.dumps(config_data))))  # tuples as lists, as config.yaml has them
    return tracker


def finish_training(run_dir: Path, final: dict[str, Any], step: int) -> None:
    """After the report: artifacts of `run_dir`, the figures at the tuned rule as final_* metrics, run finished.
    A run folder without mlflow.json (a --folds run's top folder) gets its own run here."""
    tracker = start_training(run_dir, yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {})
    if tracker is None:
        return
    tracker.log_metrics({f"final_{k}": v for k, v in final.items() if _is_number(v)}, step)
    tracker.log_artifacts(run_dir / name for name in RUN_ARTIFACTS)
    tracker.finish()


def log_evaluation(run_id: str, metrics: dict[str, Any], csv_path: Path, name: str, model_dir: Path | None = None) -> str | None:
    """An evaluation's figures (eval_NAME, eval_NAME_low/_high) and CSV into run `run_id`, or a new run named
    `name`; the run id, None when unreachable. Run `run_id` is looked for where MODEL_DIR/mlflow.json says
    it lives (a training's run in a local store, evaluated from elsewhere), else at `tracking_uri()`."""
    record = _read_record(model_dir) if run_id and model_dir is not None else {}
    uri = str(record.get("tracking_uri") or "") if record.get("run_id") == run_id else ""
    tracker = Tracker.open(run_id, name=name, uri=uri)
    if tracker is None:
        return None
    values = {f"eval_{k}": v for k, v in metrics.items() if _is_number(v)}
    for key, (low, high) in (metrics.get("intervals") or {}).items():
        values |= {f"eval_{key}_low": low, f"eval_{key}_high": high}
    tracker.log_metrics(values, 0)
    if metrics.get("distance_unit"):  # a tag, not a parameter: a later evaluation in other units may change it
        tracker._guard(lambda: tracker.client.set_tag(tracker.run_id, "eval_distance_unit", str(metrics["distance_unit"])))
    tracker.log_artifacts([csv_path])
    if not run_id:
        tracker.finish()
    return tracker.run_id


def _read_record(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value
