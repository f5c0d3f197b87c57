"""Training reads its folder once: every image and mask is opened once between the start of the run and its
first step (fingerprint, plan, hashes and the set all come from one pass, data/dataset.py::survey).

Resolving the config beforehand (training/recipes.py::detected_channels) still decodes the first few images
to count their channels when model.in_channels is not given; that is outside what this test counts."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from unetkit.api import train
from unetkit.config import DataConfig, ModelConfig, TrainConfig
from unetkit.data.synthetic import generate_synthetic
from unetkit.training import loop, runner

_WATCHED: list[Counter[Path]] = []  # the counter of the test now running; the audit hook stays for the process


def _count_opens(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _WATCHED and isinstance(args[0], (str, Path)):
        _WATCHED[-1][Path(args[0]).resolve()] += 1


sys.addaudithook(_count_opens)


class _FirstStep(Exception):
    """Raised where the first training step would run: what was opened until then is counted."""


@pytest.mark.parametrize("patch_size", [None, 32], ids=["whole", "patches"])
def test_each_file_is_opened_once_before_the_first_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        patch_size: int | None) -> None:
    data = generate_synthetic(tmp_path / "d", 40, size=40, seed=4)
    files = sorted(path.resolve() for folder in ("images", "masks") for path in (data / folder).iterdir())

    def first_step(*_: object) -> None:
        raise _FirstStep

    opened: Counter[Path] = Counter()
    real_run = runner.run_training

    def counted_run(*args: Any, **kwargs: Any) -> Any:
        _WATCHED.append(opened)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", first_step)
    monkeypatch.setattr(runner, "run_training", counted_run)
    try:
        with pytest.raises(_FirstStep):
            train(TrainConfig(out_dir=str(tmp_path / "run"), data=DataConfig(data_dir=str(data), patch_size=patch_size),
                              model=ModelConfig(start_neurons=4, depth=2), epochs=1, batch_size=8))
    finally:
        _WATCHED.clear()
    counts = {path: opened[path] for path in files}
    assert len(files) == 80 and set(counts.values()) == {1}  # each of 40 images and 40 masks: read, and once
