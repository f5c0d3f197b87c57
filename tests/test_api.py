"""The demo job (what `make demo` runs) on a tiny budget: every promised file appears."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetkit.api import demo


@pytest.mark.slow
def test_demo_writes_every_promised_file(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    result = demo(root, n_train=24, n_test=6, time_budget_min=0.03, epochs=2)
    for name in ("model.safetensors", "metrics.csv", "curves.png", "overlays.png", "evaluation.csv",
                 "threshold_sweep.csv", "checkpoints/last.safetensors"):
        assert (root / name).stat().st_size > 100, name
    masks = sorted((root / "predictions").glob("syn_*.png"))
    assert len(masks) == 6
    assert np.asarray(Image.open(masks[0])).shape == (101, 101)
    assert result.metrics["n_images"] == 6 and 0.0 <= result.metrics["iou"] <= 1.0
    assert Image.open(root / "overlays.png").size[0] >= 600
