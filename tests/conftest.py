"""Shared fixtures: tiny synthetic folders and a tiny trained-or-random model file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from unetkit.data.preprocess import identity_preprocess
from unetkit.data.synthetic import generate_synthetic
from unetkit.export.model_file import save_model
from unetkit.models import UNet

TGS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "tgs-salt"


# Under pytest-xdist (`make test` runs one worker per core) each worker keeps to its share of the cores:
# two workers with two torch threads each would oversubscribe a 2-core machine.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests (real trainings, servers, subprocesses) first, the rest in their usual order.

    pytest-xdist (`--dist loadgroup`) deals its xdist groups first, then single tests in collection order,
    each to the worker that is free: started early, a slow test overlaps the many quick ones; left to the
    end of the order, it would hold one worker while the other idles.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _in_own_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own folder: what a command writes into the current folder (evaluate's
    default CSV) lands there, never in the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def synthetic_dir(tmp_path: Path) -> Path:
    """A labelled folder of 12 synthetic 40x40 examples."""
    return generate_synthetic(tmp_path / "syn", 12, size=40, seed=3)


@pytest.fixture
def tiny_model_file(tmp_path: Path) -> Path:
    """A random small binary model saved as a unetkit model file."""
    net = UNet(start_neurons=4, depth=2)
    path = tmp_path / "tiny.safetensors"
    save_model(path, net, identity_preprocess(1), threshold=0.5)
    return path


def write_gray_png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path
