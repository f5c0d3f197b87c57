from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unetkit.data.preprocess import Preprocess
from unetkit.export.model_file import SavedModel, load_model
from unetkit.inference.predictor import Predictor
from unetkit.models import UNet


@pytest.mark.parametrize("height,width", [(101, 101), (1, 57), (33, 7), (300, 517)])
def test_probabilities_and_masks_have_the_input_size(tiny_model_file: Path, height: int, width: int) -> None:
    predictor = Predictor(load_model(tiny_model_file), device="cpu")
    images = np.random.default_rng(0).integers(0, 255, (2, height, width, 1), dtype=np.uint8)
    prob = predictor.probabilities(images)
    assert prob.shape == (2, 1, height, width) and prob.dtype == np.float32
    assert 0.0 <= prob.min() and prob.max() <= 1.0
    assert predictor.to_mask(prob[0]).shape == (height, width)


def test_resize_policy_returns_the_input_size() -> None:
    saved = SavedModel(UNet(start_neurons=2, depth=2).eval(), Preprocess((0.0,), (1.0,), "resize", 32))
    prob = Predictor(saved, device="cpu").probabilities(np.zeros((1, 45, 71, 1), np.uint16))
    assert prob.shape == (1, 1, 45, 71)


def test_multiclass_masks_are_argmax_indices() -> None:
    saved = SavedModel(UNet(num_classes=3, start_neurons=2, depth=2).eval(), Preprocess((0.0,), (1.0,)))
    predictor = Predictor(saved, device="cpu")
    prob = predictor.probabilities(np.zeros((1, 20, 20, 1), np.uint8))[0]
    assert prob.shape == (3, 20, 20)
    assert np.allclose(prob.sum(0), 1.0, atol=1e-5)
    assert predictor.to_mask(prob).max() <= 2


def test_run_batches_same_sizes_and_keeps_order(tiny_model_file: Path) -> None:
    predictor = Predictor(load_model(tiny_model_file), device="cpu", batch_size=2)
    sizes = [(10, 10), (10, 10), (10, 10), (12, 9), (10, 10)]
    items = [(i, np.zeros((*s, 1), np.uint8)) for i, s in enumerate(sizes)]
    out = list(predictor.run(items))
    assert [key for key, _, _ in out] == [0, 1, 2, 3, 4]
    assert [prob.shape[1:] for _, _, prob in out] == sizes


def test_threshold_override_is_refused_for_multiclass_models() -> None:
    from unetkit.errors import UserError

    saved = SavedModel(UNet(num_classes=3, start_neurons=2, depth=2).eval(), Preprocess((0.0,), (1.0,)))
    with pytest.raises(UserError, match="threshold applies to binary and multi-label models only"):
        Predictor(saved, device="cpu", threshold=0.3)
