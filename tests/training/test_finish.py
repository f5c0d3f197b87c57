"""Every kind of run ends through training/finish.py: a single split, SWA and K folds each write one model
file whose threshold is the one the sweep picks on its held-out predictions (out of fold for folds)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from unetkit.api import train
from unetkit.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from unetkit.data.dataset import LabelledSet, load_labelled
from unetkit.data.synthetic import generate_synthetic
from unetkit.export.model_file import load_model
from unetkit.inference.engine import planned_tile
from unetkit.training import finish as finish_module
from unetkit.training import loop, runner
from unetkit.training.losses import get_loss
from unetkit.training.threshold import tune_decision
from unetkit.training.validation import target_maps, validate

pytestmark = pytest.mark.slow
TINY = ModelConfig(start_neurons=4, depth=2, batch_norm=True)


@pytest.fixture(scope="module")
def data_32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("fin") / "set", 16, size=32, seed=3)


@pytest.fixture
def finishes(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every call of `finish` (from the loop and from the fold runner), with what it was given and wrote."""
    calls: list[dict[str, Any]] = []

    def spy(config, run_dir, net, held, preprocess, device, settings, **kw):  # noqa: ANN001, ANN003, ANN202
        done = finish_module.finish(config, run_dir, net, held, preprocess, device, settings, **kw)
        calls.append({"run_dir": run_dir, "held": len(held), "made_of": kw["made_of"], "result": done})
        return done

    monkeypatch.setattr(loop, "finish", spy)
    monkeypatch.setattr(runner, "finish", spy)
    return calls


def _config(data: Path, out: Path, **changes: Any) -> TrainConfig:
    return TrainConfig(out_dir=str(out), data=DataConfig(data_dir=str(data)), model=TINY, epochs=2, batch_size=4,
                       **changes)


def _retuned(data: LabelledSet, parts: list[tuple[Path, list[str]]]) -> float:
    """The threshold the sweep picks on the images named in each part, each predicted by its part's model file."""
    defaults = TrainConfig()
    loss = partial(get_loss(defaults.loss.name), options=defaults.loss, ignore_index=None)
    probabilities, truths = [], []
    for model_file, stems in parts:
        saved = load_model(model_file)
        held = data.subset(np.array(sorted(data.stems.index(stem) for stem in stems)))
        _, kept = validate(saved.net, held, saved.preprocess, loss, torch.device("cpu"), 4, keep_probabilities=True,
                           tile=planned_tile(saved.training))
        probabilities.append(kept)
        truths.append(target_maps(held))
    decision, _ = tune_decision(torch.cat(probabilities), torch.cat(truths), defaults.decision.threshold_metric)
    return decision.threshold


def test_a_split_swa_and_folds_end_through_one_finish(data_32: Path, tmp_path: Path,
                                                      finishes: list[dict[str, Any]]) -> None:
    data = load_labelled(data_32, 1, 1, show_progress=False)
    single = train(_config(data_32, tmp_path / "single"))
    swa = train(_config(data_32, tmp_path / "swa", optim=OptimConfig(swa_start=0.5)))
    folds = train(_config(data_32, tmp_path / "folds", folds=2))
    assert [(c["run_dir"], c["held"]) for c in finishes] == [
        (tmp_path / "single", 1), (tmp_path / "swa", 1), (tmp_path / "folds" / "fold_0", 1),
        (tmp_path / "folds" / "fold_1", 1), (tmp_path / "folds", 2)]  # the ensemble is scored out of fold
    assert finishes[0]["made_of"].startswith("best epoch") and finishes[1]["made_of"] == "SWA of 2 epochs"
    for call, result in zip([finishes[0], finishes[1], finishes[4]], [single, swa, folds]):
        assert result == call["result"] and result.model_path == call["run_dir"] / "model.safetensors"
        assert sorted(p.name for p in call["run_dir"].glob("*.safetensors")) == ["model.safetensors"]
        assert load_model(result.model_path).threshold == result.threshold
    for result in (single, swa):
        split = json.loads((result.run_dir / "split.json").read_text())
        assert result.threshold == _retuned(data, [(result.model_path, split["val"])])
    split = json.loads((tmp_path / "folds" / "split.json").read_text())["folds"]
    members = [(tmp_path / "folds" / f"fold_{i}" / "model.safetensors", split[i]) for i in range(2)]
    assert folds.threshold == _retuned(data, members)
    assert load_model(folds.model_path).training["out_of_fold"]["n_images"] == 16
