"""MLflow tracking against a real `mlflow server` on 127.0.0.1 (started once for the module, stopped at
the end): a tiny training read back through MlflowClient, an evaluation added to its run, and a
server killed mid-run (one warning, a complete run folder). The kill test runs last: it stops the
module's server."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from unetkit import tracking
from unetkit.api import evaluate, train
from unetkit.cli.main import main
from unetkit.config import DataConfig, EvaluateConfig, ModelConfig, RuntimeConfig, TrainConfig
from unetkit.data.preprocess import identity_preprocess
from unetkit.data.synthetic import generate_synthetic
from unetkit.export.model_file import save_model
from unetkit.models import UNet
from unetkit.training.observe import EpochObserver

# One xdist worker for the module: its server starts once, and the kill test runs after the others.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tracking")]
SERVER_START_S = 600  # generous: a loaded 2-core machine imports MLflow slowly


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen]]:
    folder = tmp_path_factory.mktemp("mlflow")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination",
               str(folder / "artifacts"), "--workers", "1"]
    # its own process group: the server runs uvicorn in a child process, and the group stops together;
    # no background job runner (seven more processes this test does not need)
    environment = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment,
                               start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(uri, process)
        yield uri, process
    finally:
        _stop(process, signal.SIGTERM)


def _stop(process: subprocess.Popen, how: signal.Signals) -> None:
    """Stop the server's process group (`how`, then SIGKILL if it lingers) and reap the server."""
    try:
        os.killpg(process.pid, how)
        process.wait(timeout=30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _wait_healthy(uri: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("mlflow server did not start")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("trk") / "set", 8, size=32, seed=2)


@pytest.fixture(autouse=True)
def _fresh_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracking, "_FAILED", set())


def _config(data: Path, out: Path, epochs: int) -> TrainConfig:
    return TrainConfig(out_dir=str(out), data=DataConfig(data_dir=str(data)), epochs=epochs, batch_size=4,
                       model=ModelConfig(start_neurons=4, depth=2), runtime=RuntimeConfig(device="cpu", track="mlflow"))


def _flat(data: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in data.items():
        out |= _flat(value, f"{prefix}{key}.") if isinstance(value, dict) and value else {f"{prefix}{key}": str(value)}
    return out


def test_a_training_and_its_evaluation_read_back_through_the_client(server, data: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    uri, _ = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    run = tmp_path / "run"
    train(_config(data, run, epochs=1))
    run_id = json.loads((run / "mlflow.json").read_text())["run_id"]
    client = MlflowClient(uri)
    stored = client.get_run(run_id)
    assert stored.info.status == "FINISHED"
    plan = json.loads((run / "plan.json").read_text())  # the plan's choices beside the config as asked
    chosen = {k: v for k, v in plan.items() if k not in ("why", "fingerprint")}
    assert stored.data.params == _flat(yaml.safe_load((run / "config.yaml").read_text()) | {"plan": chosen})
    assert stored.data.params["plan.monitor"] == plan["monitor"] != ""
    with (run / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for column in rows[0]:
        if column != "epoch":
            history = [(m.step, m.value) for m in client.get_metric_history(run_id, column)]
            assert history == [(int(row["epoch"]), float(row[column])) for row in rows], column
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"model.safetensors", "report.html", "curves.png", "plan.json", "threshold_sweep.csv"} <= artifacts
    result = evaluate(EvaluateConfig(model_path=str(run / "model.safetensors"), data_dir=str(data), device="cpu",
                                     csv_path=str(tmp_path / "e.csv"), resamples=50, track="mlflow", run_id=run_id))
    metrics = client.get_run(run_id).data.metrics
    assert metrics["eval_iou"] == result.metrics["iou"]
    assert metrics["eval_iou_low"] == result.metrics["intervals"]["iou"][0]
    assert "e.csv" in {a.path for a in client.list_artifacts(run_id)}


def test_without_a_tracking_uri_the_run_lands_in_the_local_mlruns_store(data: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "model.safetensors"
    save_model(model, UNet(start_neurons=4, depth=2), identity_preprocess(1), threshold=0.5)
    result = evaluate(EvaluateConfig(model_path=str(model), data_dir=str(data), device="cpu", csv_path="e.csv",
                                     metrics="iou,hd95", resamples=20, track="mlflow"))
    run_id = result.metrics["mlflow_run_id"]
    store = tmp_path / "mlruns"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["e.csv", "mlruns", "model.safetensors"]  # no ./mlflow.db
    stored = MlflowClient(f"sqlite:///{store / 'mlflow.db'}").get_run(run_id)
    assert stored.data.metrics["eval_iou"] == result.metrics["iou"]
    assert stored.data.tags["eval_distance_unit"] == "px"
    assert stored.info.artifact_uri == (store / "unetkit" / run_id / "artifacts").as_uri()
    assert (store / "unetkit" / run_id / "artifacts" / "e.csv").read_bytes() == (tmp_path / "e.csv").read_bytes()
    # evaluated again from another folder: the model's mlflow.json says where its run lives
    (tmp_path / tracking.RECORD).write_text(json.dumps({"run_id": run_id,
                                                        "tracking_uri": f"sqlite:///{store / 'mlflow.db'}"}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    evaluate(EvaluateConfig(model_path=str(model), data_dir=str(data), device="cpu", csv_path="f.csv",
                            metrics="dice", resamples=0, track="mlflow", run_id=run_id))
    assert sorted(path.name for path in elsewhere.iterdir()) == ["f.csv"]
    assert "eval_dice" in MlflowClient(f"sqlite:///{store / 'mlflow.db'}").get_run(run_id).data.metrics


def test_without_mlflow_the_flag_is_one_line(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--track", "mlflow"])
    assert code == 2
    assert capsys.readouterr().err.strip() == ("unetkit: error: --track mlflow needs the mlflow package: "
                                               "pip install 'unetkit[mlflow]'")
    assert not (tmp_path / "run").exists()


def test_a_server_killed_mid_run_is_one_warning_and_a_complete_run_folder(server, data: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    uri, process = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracked = EpochObserver.track

    def track_then_kill(self: EpochObserver, row: dict[str, float], epoch: int) -> None:
        tracked(self, row, epoch)
        if epoch == 1:
            _stop(process, signal.SIGKILL)

    monkeypatch.setattr(EpochObserver, "track", track_then_kill)
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="unetkit"):
        result = train(_config(data, run, epochs=2))
    warnings = [r.getMessage() for r in caplog.records if "MLflow tracking" in r.getMessage()]
    assert len(warnings) == 1 and uri in warnings[0]
    assert result.epochs_done == 2
    for name in ("model.safetensors", "report.html", "metrics.csv", "curves.png", "config.yaml", "mlflow.json"):
        assert (run / name).is_file(), name
    with (run / "metrics.csv").open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 2
