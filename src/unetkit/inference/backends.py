"""Which backend applies a model file: a `.onnx` export through onnxruntime (no torch), anything
else as a unetkit safetensors model through PyTorch. Kept apart from the engine, which both
backends build on, so neither imports the other."""

from __future__ import annotations

import os
from pathlib import Path

from unetkit import distributed
from unetkit.config import InferenceOptions
from unetkit.errors import UserError
from unetkit.inference.engine import PredictionEngine


def open_predictor(model_path: str | os.PathLike[str], options: InferenceOptions) -> PredictionEngine:
    """A model file -> its predictor: `.onnx` through onnxruntime (no torch), else PyTorch."""
    if Path(model_path).suffix.lower() == ".onnx":
        if distributed.launched():
            raise UserError(f"{model_path}: ONNX models are predicted by one process (torchrun coordinates "
                            "PyTorch processes); run without torchrun, or give the .safetensors model")
        from unetkit.inference.onnx_predictor import OnnxPredictor, load_onnx

        return OnnxPredictor(load_onnx(model_path, options.device), options)
    from unetkit.export.model_file import load_model
    from unetkit.inference.predictor import Predictor

    return Predictor(load_model(model_path), options)
