"""Validation is prediction: the figures `fit` logs for a network are the figures `evaluate`
reports for the same network saved as a model file, on the same images and options."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unetkit.api import evaluate
from unetkit.config import EvaluateConfig
from unetkit.data.dataset import load_labelled
from unetkit.data.preprocess import Preprocess
from unetkit.data.synthetic import generate_synthetic
from unetkit.export.model_file import save_model
from unetkit.models import UNet
from unetkit.training.losses import get_loss
from unetkit.training.validation import validate


@pytest.mark.parametrize("size", [40, 300])  # 300 > the 256 tile: both paths tile it the same way
def test_validation_figures_equal_evaluate(tmp_path: Path, size: int) -> None:
    data = generate_synthetic(tmp_path / "syn", 6, size=size, seed=8)
    torch.manual_seed(3)
    net = UNet(start_neurons=4, depth=2).eval()
    preprocess = Preprocess((0.45,), (0.2,))
    save_model(tmp_path / "m.safetensors", net, preprocess, threshold=0.5)
    figures, _ = validate(net, load_labelled(data, 1, 1, show_progress=False), preprocess, get_loss("bce"),
                          torch.device("cpu"), batch_size=4)
    scored = evaluate(EvaluateConfig(model_path=str(tmp_path / "m.safetensors"), data_dir=str(data), device="cpu",
                                     batch_size=4, csv_path=str(tmp_path / "e.csv"))).metrics
    for name in ("iou", "dice", "pixel_accuracy", "tgs_map", "mean_image_iou", "n_images"):
        assert figures[name] == pytest.approx(scored[name], abs=1e-12), name


def test_the_validation_loss_is_taken_on_the_logits(tmp_path: Path) -> None:
    data = load_labelled(generate_synthetic(tmp_path / "syn", 6, size=40, seed=8), 1, 1, show_progress=False)
    torch.manual_seed(3)
    net = UNet(start_neurons=4, depth=2).eval()
    with torch.no_grad():
        net.head.bias.fill_(40.0)  # confident: probabilities round to 1, where logits recovered from them would clamp
    preprocess = Preprocess((0.45,), (0.2,))
    bce = get_loss("bce")
    figures, _ = validate(net, data, preprocess, bce, torch.device("cpu"), batch_size=6)
    with torch.no_grad():
        logits = net(preprocess.to_tensor(data.images))
    expected = float(bce(logits, torch.from_numpy(data.masks).long()))
    assert expected > 17.0  # beyond -log(1e-7) = 16.1, the most a loss on clamped probabilities can reach
    assert figures["loss"] == pytest.approx(expected, rel=1e-5)
