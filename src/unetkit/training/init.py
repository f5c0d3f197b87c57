"""Fine-tuning: a run that starts from a model file's weights and normalisation (`train --init MODEL`).

The model file is the whole starting point. Its stored training config is the base the run's flags lie over (so
`train --data LABELS --init RUN/model.safetensors` trains the reviewed model's architecture with its recipe), its
weights replace the random initialisation, and its normalisation replaces the statistics a new run would measure on
the new data: the network keeps seeing pixels as it learned them. A run whose model section differs from the file's
is refused with one line naming the fields, before anything is written.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from unetkit.config import TrainConfig
from unetkit.data.preprocess import Preprocess
from unetkit.errors import UserError
from unetkit.export.model_file import SavedModel, load_model
from unetkit.models.base import SegmentationNet
from unetkit.models.registry import build_model

# Fields of the stored config that describe the earlier run, not the model: the new run sets its own.
_RUN_FIELDS = ("out_dir", "folds", "fold", "init_model", "time_budget_min", "epochs")


def _single(path: str | os.PathLike[str]) -> SavedModel:
    """The model file, refused with one line when it is an ensemble (several nets, no one to start from)."""
    saved = load_model(path)
    if not isinstance(saved.net, SegmentationNet):
        raise UserError(f"{path}: is an ensemble of {len(saved.net.members)} models (a --folds run); "
                        "--init takes one model: give a fold's model.safetensors")
    return saved


def init_layer(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The config layer a fine-tune starts from: the model file's stored training config (less the
    fields of its run) with the file's own architecture, which wins over anything stored beside it."""
    saved = _single(path)
    stored = saved.training.get("config") if isinstance(saved.training, dict) else None
    layer = {k: v for k, v in stored.items() if k not in _RUN_FIELDS} if isinstance(stored, dict) else {}
    if isinstance(layer.get("data"), dict):
        layer["data"] = {k: v for k, v in layer["data"].items() if k != "data_dir"}
    layer["model"] = dataclasses.asdict(saved.config)
    return layer


def check_init(config: TrainConfig) -> None:
    """One line, before anything is written, when the run's architecture is not the model file's."""
    if not config.init_model:
        return
    saved = _single(config.init_model)
    if saved.config != config.model:
        ours, theirs = dataclasses.asdict(config.model), dataclasses.asdict(saved.config)
        differ = ", ".join(f"model.{k} {ours[k]!r} (file: {theirs[k]!r})" for k in ours if ours[k] != theirs.get(k))
        raise UserError(f"{config.init_model}: --init needs the run's architecture to be the model file's; "
                        f"this run differs in {differ}")


def initial_net(config: TrainConfig) -> SegmentationNet:
    """The network a new run starts from: the --init model's weights, else a fresh one from the registry."""
    if config.init_model:
        return _single(config.init_model).net.train()  # type: ignore[return-value]  # _single refused ensembles
    return build_model(config.model)


def init_preprocess(config: TrainConfig) -> Preprocess | None:
    """The --init model's normalisation (None without --init: the run measures its own)."""
    return _single(config.init_model).preprocess if config.init_model else None
