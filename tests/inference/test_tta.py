from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from unetkit.data.preprocess import Preprocess
from unetkit.export.model_file import SavedModel
from unetkit.inference.predictor import Predictor
from unetkit.inference.tta import TTA_MODES, averaged, symmetries, unseen_views, widest_seen
from unetkit.models import UNet


@pytest.mark.parametrize("mode,count", [("none", 1), ("hflip", 2), ("flips", 4), ("d4", 8)])
def test_every_inverse_is_exact_and_transforms_are_distinct(mode: str, count: int) -> None:
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)  # non-square, no symmetry
    transforms = symmetries(mode)
    assert len(transforms) == count
    seen = set()
    for symmetry in transforms:
        moved = symmetry.apply(x)
        assert torch.equal(symmetry.invert(moved), x)
        seen.add(tuple(moved.flatten().tolist()) + tuple(moved.shape))
    assert len(seen) == count


def test_averaged_is_the_mean_of_the_mapped_back_predictions() -> None:
    x = torch.randn(1, 1, 6, 9)
    weights = torch.randn(6, 9)  # position-dependent: not equivariant, so every transform differs

    def forward(t: torch.Tensor) -> torch.Tensor:
        return t * (weights if t.shape[-2:] == (6, 9) else weights.T)

    expected = torch.stack([forward(x), forward(x.flip(-1)).flip(-1), forward(x.flip(-2)).flip(-2),
                            forward(x.flip(-1, -2)).flip(-1, -2)]).mean(0)
    assert torch.allclose(averaged(forward, x, "flips", lambda t: t), expected, atol=1e-6)
    left_right = torch.stack([forward(x), forward(x.flip(-1)).flip(-1)]).mean(0)  # hflip: the width axis only
    assert torch.allclose(averaged(forward, x, "hflip", lambda t: t), left_right, atol=1e-6)


def test_equivariant_model_is_unchanged_by_tta() -> None:
    # a pointwise network commutes with every symmetry, so TTA must give back the plain prediction
    net = UNet(start_neurons=2, depth=1).eval()
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.constant_(module.bias, 0.3)
    saved = SavedModel(net, Preprocess((0.0,), (1.0,)))
    image = np.random.default_rng(0).integers(0, 255, (1, 40, 33, 1), dtype=np.uint8)
    plain = Predictor(saved, device="cpu").probabilities(image)
    for mode in ("hflip", "flips", "d4"):
        assert np.abs(Predictor(saved, device="cpu", tta=mode).probabilities(image) - plain).max() < 1e-6


def test_tta_works_with_tiling_and_the_resize_policy() -> None:
    torch.manual_seed(0)
    saved = SavedModel(UNet(start_neurons=4, depth=1).eval(), Preprocess((0.5,), (0.25,)))
    image = np.random.default_rng(0).integers(0, 255, (1, 150, 211, 1), dtype=np.uint8)
    whole = Predictor(saved, device="cpu", tile=1024, tta="d4").probabilities(image)
    tiled = Predictor(saved, device="cpu", tile=64, tta="d4").probabilities(image)
    assert tiled.shape == (1, 1, 150, 211) and np.abs(tiled - whole).max() < 0.01
    resized = SavedModel(saved.net, Preprocess((0.5,), (0.25,), "resize", 32))
    assert Predictor(resized, device="cpu", tta="d4").probabilities(image).shape == (1, 1, 150, 211)


@pytest.mark.parametrize("mode", ["hflip", "flips", "d4"])
def test_numpy_arrays_move_exactly_as_tensors(mode: str) -> None:
    # ONNX prediction runs TTA on NumPy arrays; every transform must move pixels as on tensors
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    for symmetry in symmetries(mode):
        assert np.array_equal(symmetry.apply(x.numpy()), symmetry.apply(x).numpy())
        assert np.array_equal(symmetry.invert(x.numpy()), symmetry.invert(x).numpy())


@pytest.mark.parametrize("drawn,unseen,widest", [
    ((False, False, False), [0, 1, 3, 7], "none"),
    ((True, False, False), [0, 0, 2, 6], "hflip"),  # TGS: left-right flips only
    ((False, True, False), [0, 1, 2, 6], "none"),
    ((True, True, False), [0, 0, 0, 4], "flips"),
    ((False, True, True), [0, 0, 0, 0], "d4"),  # an up-down flip and quarter turns generate all eight
])
def test_unseen_views_count_what_the_augmentation_never_drew(drawn: tuple[bool, bool, bool], unseen: list[int],
                                                             widest: str) -> None:
    flags = dict(zip(("hflip", "vflip", "rotate90"), drawn))
    assert [unseen_views(mode, **flags) for mode in TTA_MODES] == unseen
    assert widest_seen(**flags) == widest


def test_prediction_warns_once_about_views_outside_the_training_augmentation(caplog: pytest.LogCaptureFixture) -> None:
    training = {"config": {"data": {"augment": "seed", "augment_params": {}}}}  # left-right flips only
    saved = SavedModel(UNet(start_neurons=2, depth=1).eval(), Preprocess((0.0,), (1.0,)), training=training)
    with caplog.at_level(logging.WARNING, logger="unetkit"):
        Predictor(saved, device="cpu", tta="hflip")
        Predictor(saved, device="cpu", tta="flips")
    assert len(caplog.records) == 1  # hflip draws nothing unseen
    message = caplog.records[0].getMessage()
    assert message.startswith("TTA 'flips' averages 2 view(s) the model never saw in training")
    assert message.endswith("'hflip' keeps to the views it saw")
