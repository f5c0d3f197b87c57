"""`unetkit plan`: the fingerprint and plan as text, with reasons, as JSON, with --set, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import unetkit
from unetkit.cli.main import main
from unetkit.data.synthetic import generate_synthetic


@pytest.fixture(scope="module")
def syn_101(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("cli") / "syn", 10, size=101, seed=0)


def test_plan_prints_fingerprint_and_choices(syn_101: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--data", str(syn_101), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "10 images, 101x101 (all one size), 1 channel(s) gray, uint8" in out
    assert "  mode             whole" in out and "  depth            4" in out and "why:" not in out


def test_plan_explain_gives_a_reason_per_field(syn_101: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--data", str(syn_101), "--device", "cpu", "--explain"]) == 0
    out = capsys.readouterr().out
    assert out.count("why: ") == 17  # every settable field
    assert "why: all images are 101x101" in out


def test_plan_json_and_set(syn_101: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--data", str(syn_101), "--device", "cpu", "--json", "--set", "mode=patch",
                 "--set", "patch_size=64"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["mode"], data["patch_size"], data["margin"]) == ("patch", 64, 20)
    assert data["why"]["patch_size"] == "set by you (patch_size=64)"
    assert data["fingerprint"]["n_images"] == 10 and data["fingerprint"]["size_max"] == [101, 101]


def test_plan_unknown_field_is_one_line(syn_101: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--data", str(syn_101), "--set", "tile=256"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unetkit: error: plan field 'tile' is unknown") and "\n" not in err


def test_plan_missing_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--data", str(tmp_path / "nowhere")]) == 2
    assert "data folder not found" in capsys.readouterr().err


def test_api_plan_is_exported(syn_101: Path) -> None:
    plan = unetkit.plan(syn_101, {"batch_size": 8}, device="cpu")
    assert plan.batch_size == 8 and plan.mode == "whole"
