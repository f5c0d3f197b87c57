"""Applying saved models to new images. `Predictor` (PyTorch) is imported on first use, so ONNX
prediction (inference/onnx_predictor.py) runs without torch."""

from __future__ import annotations

from typing import Any

__all__ = ["Predictor"]


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        from unetkit.inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'unetkit.inference' has no attribute {name!r}")
