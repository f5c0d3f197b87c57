"""The architecture, preprocessing, decision rule and training record stored beside a network, read
back from a model file or an ONNX export and checked the same way for both. No torch here: ONNX
prediction uses it."""

from __future__ import annotations

import json
from typing import Any

from unetkit.config import ModelConfig, from_dict
from unetkit.data.preprocess import Preprocess

ONNX_FORMAT = "unetkit-onnx"  # the "format" of an ONNX export's metadata


def checked_metadata(metadata: dict[str, str]) -> tuple[ModelConfig, Preprocess, float, dict[str, int], dict[str, Any]]:
    """(model config, preprocess, threshold, postprocess, training record) from model-file or ONNX metadata,
    refusing values no training writes (KeyError, TypeError, ValueError, UserError): a threshold outside
    [0, 1] or NaN, unknown or negative rule areas, classes that are not [{name, color}]."""
    fields = json.loads(metadata["model"])
    if isinstance(fields, dict):  # files from before model.image_gate predicted from the pixels alone
        fields.setdefault("image_gate", False)
    config = from_dict(ModelConfig, fields, where="model")
    preprocess = Preprocess.from_dict(json.loads(metadata["preprocess"]), config.in_channels)
    threshold = float(metadata.get("threshold", "0.5"))
    if not 0.0 <= threshold <= 1.0:  # NaN fails this too
        raise ValueError(f"threshold {threshold} must lie in [0, 1]")
    rule = json.loads(metadata.get("postprocess", "{}"))
    if not isinstance(rule, dict) or not set(rule) <= {"min_area", "empty_below"}:
        raise ValueError(f"postprocess {rule!r} may hold only min_area and empty_below")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in rule.values()):
        raise ValueError(f"postprocess {rule!r} must hold pixel counts >= 0")
    training = json.loads(metadata.get("training", "{}"))
    if not isinstance(training, dict):
        raise ValueError("training must be a JSON object")
    for entry in training.get("classes", []) if isinstance(training.get("classes", []), list) else [None]:
        color = entry.get("color") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not (
                color is None or (isinstance(color, list) and len(color) == 3
                                  and all(isinstance(c, int) and 0 <= c <= 255 for c in color))):
            raise ValueError(f"training.classes entry {entry!r} must be {{name, color: [r, g, b] or null}}")
    return config, preprocess, threshold, rule, training
