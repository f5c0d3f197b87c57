"""The unetkit model file: one safetensors file, weights plus JSON metadata, no pickle. Its keys
(format, format_version, model, preprocess, threshold, postprocess, training, members): docs/model-file.md.
The network is rebuilt from "model" alone; an ensemble's members are tensors member0.* .. member{K-1}.*.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from unetkit.config import ModelConfig
from unetkit.data.io import first_line
from unetkit.data.preprocess import Preprocess
from unetkit.errors import UserError
from unetkit.export.metadata import checked_metadata
from unetkit.fileio import atomic_path
from unetkit.models.base import SegmentationNet
from unetkit.models.ensemble import Ensemble
from unetkit.models.registry import build_model

FORMAT = "unetkit"
CHECKPOINT_FORMAT = "unetkit-checkpoint"
FORMAT_VERSION = "1"
MAX_MEMBERS = 64  # ensemble members a model file may declare (k-fold runs and snapshots stay far below)


@dataclass
class SavedModel:
    """A network with everything needed to apply it: preprocessing and decision threshold."""

    net: SegmentationNet | Ensemble
    preprocess: Preprocess
    threshold: float = 0.5  # binary models only; multi-class masks are the argmax
    training: dict[str, Any] = field(default_factory=dict)
    postprocess: dict[str, int] = field(default_factory=dict)  # binary: min_area, empty_below (pixels)

    @property
    def config(self) -> ModelConfig:
        return self.net.config

    @property
    def classes(self) -> list[dict[str, Any]]:
        """[{"name", "color"}] from the training data's classes.yaml; empty when it had none."""
        return list(self.training.get("classes", []))


def write_safetensors(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write tensors and string metadata to `path` atomically."""
    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(contiguous, str(tmp), metadata=metadata)
        except SafetensorError as exc:  # a full disk surfaces here, not as an OSError
            raise UserError(f"{path}: cannot write ({str(exc).splitlines()[0] if str(exc) else 'disk full?'})") from None


def read_safetensors(path: str | os.PathLike[str], expected_format: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file written by unetkit, refusing anything else with one line."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{file}: model file not found")
    try:
        with safe_open(str(file), framework="pt") as handle:
            metadata = handle.metadata() or {}
            found = metadata.get("format")
            if found == CHECKPOINT_FORMAT and expected_format == FORMAT:
                raise UserError(f"{file}: is a training checkpoint; use the run's model.safetensors "
                                "(or checkpoints/best.safetensors)")
            if found != expected_format:
                raise UserError(f"{file}: not a {expected_format} file (safetensors without unetkit metadata)")
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{file}: not a safetensors file ({str(exc).splitlines()[0] if str(exc) else 'unreadable'}); "
                        "unetkit reads only its own safetensors model files, never pickles") from None
    if metadata.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{file}: format version {metadata.get('format_version')} is not supported "
                        f"(this unetkit reads {FORMAT_VERSION})")
    return tensors, metadata


def model_metadata(net: SegmentationNet | Ensemble, preprocess: Preprocess, threshold: float, training: dict[str, Any],
                   postprocess: dict[str, int] | None = None) -> dict[str, str]:
    """The metadata strings describing `net` (shared by model files and checkpoints)."""
    return {"postprocess": json.dumps(postprocess or {}), "format": FORMAT, "format_version": FORMAT_VERSION,
            "model": json.dumps(dataclasses.asdict(net.config)), "preprocess": json.dumps(dataclasses.asdict(preprocess)),
            "threshold": repr(float(threshold)), "training": json.dumps(training)}


def save_model(path: str | os.PathLike[str], net: SegmentationNet | Ensemble, preprocess: Preprocess, *, threshold: float = 0.5,
               postprocess: dict[str, int] | None = None, training: dict[str, Any] | None = None) -> None:
    """Write `net` and what is needed to apply it as one pickle-free model file."""
    write_safetensors(path, net.state_dict(), model_metadata(net, preprocess, threshold, training or {}, postprocess))


def save_ensemble(path: str | os.PathLike[str], nets: list[SegmentationNet], preprocess: Preprocess, *, threshold: float = 0.5,
                  postprocess: dict[str, int] | None = None, training: dict[str, Any] | None = None) -> None:
    """One model file holding K members (tensors member{i}.*), averaged at prediction time."""
    tensors = {f"member{i}.{k}": v for i, net in enumerate(nets) for k, v in net.state_dict().items()}
    write_safetensors(path, tensors, model_metadata(nets[0], preprocess, threshold, training or {}, postprocess)
                      | {"members": str(len(nets))})


def model_from_parts(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> SavedModel:
    """Rebuild a SavedModel from weights and metadata, with one-line errors for inconsistent files."""
    try:
        config, preprocess, threshold, postprocess, training = checked_metadata(metadata)
        members = int(metadata.get("members", "0"))
        if not 0 <= members <= MAX_MEMBERS:
            raise ValueError(f"members {members} must lie in 0..{MAX_MEMBERS}")
        for name, tensor in state.items():  # batch norm's step counter is the one integer
            if not tensor.is_floating_point() and not name.endswith("num_batches_tracked"):
                raise ValueError(f"tensor {name} has dtype {tensor.dtype}; weights are floating point")
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"tensor {name} holds NaN or infinite values")
    except (KeyError, TypeError, ValueError, UserError) as exc:
        raise UserError(f"{path}: model metadata is incomplete or invalid ({exc})") from None
    try:
        nets = [build_model(config, pretrained=False) for _ in range(max(members, 1))]
        for i, member in enumerate(nets):
            prefix = f"member{i}." if members else ""
            member.load_state_dict({k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)})
        net: SegmentationNet | Ensemble = Ensemble(nets) if members else nets[0]
    except (RuntimeError, MemoryError) as exc:
        first = first_line(exc)
        if isinstance(exc, MemoryError) or "allocate" in first:
            raise UserError(f"{path}: the architecture in its metadata is too large to build here ({first})") from None
        raise UserError(f"{path}: weights do not match the architecture in its metadata ({first})") from None
    return SavedModel(net.eval(), preprocess, threshold, training, postprocess)


def load_model(path: str | os.PathLike[str]) -> SavedModel:
    """Load a unetkit model file (safetensors + metadata) into a SavedModel on the CPU, in eval mode."""
    tensors, metadata = read_safetensors(path, FORMAT)
    return model_from_parts(Path(path), tensors, metadata)
