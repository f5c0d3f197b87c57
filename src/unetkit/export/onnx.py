"""ONNX export: the network with its activation (standardised float32 (N, C, H, W) in, probabilities
(N, K, H, W) out), dynamic batch, height and width, and what applying it needs in the ONNX metadata.

Any H and W work because the reflect padding to the net's multiple is traced with the input's shape;
hence PyTorch's TorchScript-based exporter (`dynamo=False`): the dynamo exporter cannot trace the
data-dependent padding mode. onnx and onnxruntime are an optional extra (`unetkit[onnx]`).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unetkit.config import ExportConfig
from unetkit.errors import UserError
from unetkit.export.metadata import ONNX_FORMAT
from unetkit.export.model_file import SavedModel, load_model, model_metadata
from unetkit.fileio import atomic_path, check_output
from unetkit.outputs import probabilities

OPSET = 17
PARITY_SHAPES = ((1, 101, 101), (2, 300, 517))  # (batch, height, width): the seed's size and an odd one


class _WithActivation(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return probabilities(self.net(x), self.net.config)


def onnx_metadata(saved: SavedModel) -> dict[str, str]:
    """What a consumer needs besides the graph, as strings (ONNX metadata_props)."""
    stored = model_metadata(saved.net, saved.preprocess, saved.threshold, saved.training, saved.postprocess)
    return {k: v for k, v in stored.items() if k != "format_version"} | {
        "format": ONNX_FORMAT, "classes": json.dumps(saved.classes),
        "input": "image: float32 (N, C, H, W), pixels scaled to [0, 1] by bit depth, then (x - mean) / std",
        "output": "probabilities: float32 (N, K, H, W)"}


@dataclass
class ExportResult:
    """An exported model file and the largest |exported - PyTorch| probability difference measured on it."""

    path: Path
    max_difference: float


def export_model(config: ExportConfig) -> ExportResult:
    """Write config.model_path in config.format (ONNX) to config.out_path (see `unetkit.export`);
    never over the model, nor over a file that is not an earlier unetkit export unless config.overwrite."""
    check_output(config.out_path, [config.model_path], overwrite=config.overwrite, ours=_is_unetkit_onnx)
    return ExportResult(Path(config.out_path), export_onnx(config.model_path, config.out_path, opset=config.opset))


def _is_unetkit_onnx(path: Path) -> bool:
    try:
        import onnx

        graph = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ONNX at all (onnx raises protobuf's DecodeError among others)
        return False
    return any(p.key == "format" and p.value == ONNX_FORMAT for p in graph.metadata_props)


def export_onnx(model_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *, opset: int = OPSET) -> float:
    """Write `out_path` (atomically) and return the largest |onnxruntime - PyTorch| probability difference
    over PARITY_SHAPES."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise UserError("ONNX export needs the onnx extra: pip install 'unetkit[onnx]'") from None
    saved = load_model(model_path)
    module = _WithActivation(saved.net.eval()).eval()
    channels = saved.config.in_channels
    example = torch.zeros(1, channels, 101, 101)
    axes = {0: "batch", 2: "height", 3: "width"}
    with atomic_path(out_path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on traced shape arithmetic
        torch.onnx.export(module, (example,), str(tmp), input_names=["image"], output_names=["probabilities"],
                          dynamic_axes={"image": axes, "probabilities": axes}, opset_version=opset, dynamo=False)
        graph = onnx.load(str(tmp))
        for key, value in onnx_metadata(saved).items():
            graph.metadata_props.add(key=key, value=value)
        onnx.save(graph, str(tmp))
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        generator = torch.Generator().manual_seed(0)
        inputs = [torch.randn(batch, channels, height, width, generator=generator) for batch, height, width in PARITY_SHAPES]
        with torch.inference_mode():
            return max(float(np.abs(session.run(None, {"image": x.numpy()})[0] - module(x).numpy()).max()) for x in inputs)

