from __future__ import annotations

import numpy as np
import torch

from unetkit.inference.postprocess import binary_decision, remove_small_components
from unetkit.training.threshold import tune_decision


def test_small_components_are_removed_large_kept() -> None:
    mask = np.zeros((10, 10), np.uint8)
    mask[0, 0] = 1  # 1 px
    mask[5:8, 5:8] = 1  # 9 px
    assert remove_small_components(mask, 2).sum() == 9
    assert remove_small_components(mask, 10).sum() == 0


def test_empty_rule_clears_tiny_predictions() -> None:
    prob = np.zeros((8, 8), np.float32)
    prob[0, :3] = 0.9
    assert binary_decision(prob, 0.5).sum() == 3
    assert binary_decision(prob, 0.5, empty_below=4).sum() == 0


def test_tuning_learns_the_empty_rule_from_validation() -> None:
    # 10 images: 5 with a 20-px object found correctly, 5 empty where the model sees a 3-px speck.
    probs = torch.zeros(10, 101, 101, dtype=torch.uint8)
    truth = torch.zeros(10, 101, 101, dtype=torch.uint8)
    probs[:5, 10:14, 10:15] = 230
    truth[:5, 10:14, 10:15] = 1
    probs[5:, 50, 50:53] = 230
    decision, _ = tune_decision(probs, truth, "tgs_map")
    assert decision.metrics["tgs_map"] == 1.0  # 0.5 before: every empty image scored 0
    assert decision.postprocess["min_area"] > 3 or decision.postprocess["empty_below"] > 3
