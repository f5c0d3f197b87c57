"""Prediction through onnxruntime from a file written by `unetkit export --format onnx`, with no
torch (a test blocks it): the graph holds the network and its activation, the ONNX metadata the
rest; tiling, blending, TTA and masks come from the same engine as PyTorch prediction, on NumPy arrays."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from unetkit.config import InferenceOptions, ModelConfig
from unetkit.data.io import first_line
from unetkit.data.preprocess import Preprocess
from unetkit.errors import UserError
from unetkit.export.metadata import ONNX_FORMAT, checked_metadata
from unetkit.inference.engine import PredictionEngine
from unetkit.inference.tta import averaged


@dataclass
class OnnxModel:
    """An exported model: an onnxruntime session and what its metadata says about applying it."""

    session: Any  # onnxruntime.InferenceSession
    config: ModelConfig
    preprocess: Preprocess
    threshold: float = 0.5
    postprocess: dict[str, int] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # the training record (config, figures)
    classes: list[dict[str, Any]] = field(default_factory=list)


def load_onnx(path: str | os.PathLike[str], device: str = "auto") -> OnnxModel:
    """Open a unetkit ONNX export on the CPU, or on CUDA where onnxruntime has that provider."""
    file = Path(path)
    try:
        import onnxruntime
    except ImportError:
        raise UserError(f"{file}: ONNX prediction needs onnxruntime (pip install 'unetkit[onnx]')") from None
    if not file.is_file():
        raise UserError(f"{file}: model file not found")
    available = onnxruntime.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise UserError(f"{file}: --device cuda needs onnxruntime-gpu (this onnxruntime has {', '.join(available)})")
    providers = ["CUDAExecutionProvider"] if device != "cpu" and "CUDAExecutionProvider" in available else []
    try:
        session = onnxruntime.InferenceSession(str(file), providers=[*providers, "CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
        raise UserError(f"{file}: not a readable ONNX model ({first_line(exc)})") from None
    metadata = session.get_modelmeta().custom_metadata_map
    if metadata.get("format") != ONNX_FORMAT:
        raise UserError(f"{file}: an ONNX model without unetkit's metadata (export it with unetkit export)")
    try:
        model = OnnxModel(session, *checked_metadata(metadata), list(json.loads(metadata.get("classes", "[]"))))
    except (KeyError, TypeError, ValueError, UserError) as exc:
        raise UserError(f"{file}: unetkit metadata is incomplete or invalid ({exc})") from None
    if (preprocess := model.preprocess).size_policy != "pad":
        raise UserError(f"{file}: the model resizes images to {preprocess.resize_to}x{preprocess.resize_to} "
                        "(size_policy resize), which ONNX prediction does not reproduce; predict with the "
                        ".safetensors model")
    return model


class OnnxPredictor(PredictionEngine):
    """The engine with onnxruntime as the network: NumPy in, NumPy out."""

    def __init__(self, model: OnnxModel, options: InferenceOptions | None = None, **fields: Any) -> None:
        super().__init__(model, options, **fields)
        if self.options.precision == "bf16":
            raise UserError("--precision bf16 applies to PyTorch models; an ONNX model runs as exported (fp32)")
        self.session = model.session
        # where the session runs, named like torch.device so the prediction job can ask `.type`
        self.device = SimpleNamespace(type="cuda" if "CUDAExecutionProvider" in self.session.get_providers() else "cpu")

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, C) raw images -> (N, C, H, W) standardised float32 (pad policy only: see load_onnx)."""
        return self.saved.preprocess.to_array(images)

    def network(self, x: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """(N, C, H, W) from `prepare` -> (N, K, H, W) float32 probabilities (activation in the graph)."""
        return averaged(lambda view: self.session.run(None, {"image": np.ascontiguousarray(view)})[0], x, self.tta,
                        lambda probabilities: probabilities)
