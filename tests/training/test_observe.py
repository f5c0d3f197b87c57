"""What training draws for a person to watch: pictures at intervals, numbers every epoch."""

from __future__ import annotations

from pathlib import Path

import pytest

from unetkit.api import train
from unetkit.data.synthetic import generate_synthetic
from unetkit.training import observe


def test_pictures_are_drawn_at_intervals_and_after_the_last_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With an interval longer than the run, 4 epochs draw two sample sheets (epochs 1 and 4) and four
    metrics.csv rows; with no interval, a sheet per epoch."""
    data = generate_synthetic(tmp_path / "syn", 12, size=40, seed=3)
    monkeypatch.setattr(observe, "PICTURES_EVERY_S", 3600.0)
    train(data, tmp_path / "sparse", recipe="seed", epochs=4, batch_size=4, model={"start_neurons": 4})
    assert sorted(p.name for p in (tmp_path / "sparse" / "samples").iterdir()) == ["epoch_0001.png", "epoch_0004.png"]
    assert len((tmp_path / "sparse" / "metrics.csv").read_text().splitlines()) == 1 + 4
    assert (tmp_path / "sparse" / "curves.png").stat().st_size > 0
    monkeypatch.setattr(observe, "PICTURES_EVERY_S", 0.0)
    train(data, tmp_path / "dense", recipe="seed", epochs=3, batch_size=4, model={"start_neurons": 4})
    assert len(list((tmp_path / "dense" / "samples").iterdir())) == 3
