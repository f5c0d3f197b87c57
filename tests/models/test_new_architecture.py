"""A new architecture is one file in models/ and one registry line: a toy one, defined here, goes
through training, resume, prediction (tiled), the model file and ONNX export by the normal paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import unetkit
from unetkit.config import DataConfig, ExportConfig, ModelConfig, PredictConfig, TrainConfig
from unetkit.data.io import read_array, write_png
from unetkit.data.synthetic import generate_synthetic
from unetkit.models import registry
from unetkit.models.base import SegmentationNet, count_parameters


class ToyNet(SegmentationNet):
    """What a new file in models/ holds: conv, pool, conv, upsample, head. (B, C, H, W) -> (B, K, H, W)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        width = config.start_neurons
        self.down = nn.Sequential(nn.Conv2d(config.in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.up = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2))
        self.head = nn.Conv2d(width, config.num_classes, 1)

    @property
    def multiple(self) -> int:
        return 2

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.up(self.down(x)))


@pytest.fixture
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.ARCHITECTURES, "toy", ToyNet)  # the one registry line


@pytest.mark.slow
def test_a_toy_architecture_trains_resumes_predicts_saves_and_exports(toy_registered: None, tmp_path: Path) -> None:
    data = generate_synthetic(tmp_path / "syn", 16, size=37, seed=2)
    model = ModelConfig(arch="toy", start_neurons=4)
    assert count_parameters(registry.build_model(model)) == 193  # 1*4*9+4 + 4*4*9+4 + 4+1
    run = tmp_path / "run"
    config = TrainConfig(out_dir=str(run), data=DataConfig(data_dir=str(data)), model=model, epochs=1, batch_size=4)
    unetkit.train(config)
    result = unetkit.resume(run, {"epochs": 2})
    assert result.epochs_done == 2 and (run / "report.html").is_file()
    saved = unetkit.load_model(result.model_path)
    assert isinstance(saved.net, ToyNet) and saved.config.arch == "toy"

    big = tmp_path / "big" / "wide.png"  # 57 x 301: tiled with tile 64, odd sizes padded to the multiple of 2
    write_png(big, (np.random.default_rng(0).random((57, 301)) * 255).astype(np.uint8))
    unetkit.predict(PredictConfig(model_path=str(result.model_path), input_path=str(big.parent),
                                  out_dir=str(tmp_path / "masks"), tile=64))
    assert read_array(tmp_path / "masks" / "wide.png").shape[:2] == (57, 301)

    exported = unetkit.export(ExportConfig(model_path=str(result.model_path), out_path=str(tmp_path / "toy.onnx")))
    assert exported.path.stat().st_size > 0 and exported.max_difference < 1e-4
