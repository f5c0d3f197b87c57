"""What a person watches during training: curves, predictions on fixed validation samples, and optionally
TensorBoard and MLflow (unetkit/tracking.py).

Pictures are redrawn at most every `PICTURES_EVERY_S` seconds (and after the first and the last epoch): drawing a
sample sheet costs about as much as an epoch on a small data set, and a time-budget run pays for it in training
steps. Numbers (metrics.csv, TensorBoard, MLflow) are written every epoch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit import tracking
from unetkit.config import TrainConfig, to_dict
from unetkit.data.dataset import LabelledSet
from unetkit.data.preprocess import Preprocess
from unetkit.errors import UserError
from unetkit.export.model_file import SavedModel
from unetkit.inference.labelled import predict_labelled
from unetkit.inference.predictor import Predictor
from unetkit.models.base import SegmentationNet
from unetkit.training.plan import Plan
from unetkit.visualize import label_map, overlay_sheet, plot_curves

SAMPLES = 4
PICTURES_EVERY_S = 30.0  # least wall time between two drawings of curves.png and a sample sheet


class EpochObserver:
    """curves.png and samples/epoch_NNNN.png (every PICTURES_EVERY_S at most), TensorBoard, MLflow."""

    def __init__(self, run_dir: Path, config: TrainConfig, val_set: LabelledSet, preprocess: Preprocess,
                 plan: Plan) -> None:
        self.run_dir, self.val_set, self.preprocess, self.tile = run_dir, val_set, preprocess, plan.predict_tile
        # Fixed samples: the validation images with the most foreground, then some empty ones, chosen once.
        order = np.argsort(-val_set.coverage(), kind="stable")
        self.indices = np.concatenate([order[: SAMPLES - 1], order[-1:]])[:SAMPLES] if len(order) else order
        self.writer: Any = None
        if config.runtime.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UserError("tensorboard: true needs the tensorboard package "
                                "(pip install 'unetkit[tensorboard]')") from None
            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        # MLflow's parameters: the config as asked (config.yaml) and the plan's choices ("auto" in the config)
        self.tracker = (tracking.start_training(run_dir, to_dict(config) | {"plan": plan.choices()})
                        if config.runtime.track == "mlflow" else None)
        self.drawn_at: float | None = None  # when the pictures were last drawn (time.monotonic)
        self.drawn_epoch = 0

    def epoch_done(self, history: list[dict[str, float]], net: SegmentationNet, device: torch.device) -> None:
        row = history[-1]
        if self.drawn_at is None or time.monotonic() - self.drawn_at >= PICTURES_EVERY_S:
            self._draw(history, net, device)
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, int(row["epoch"]))
            self.writer.flush()

    def track(self, row: dict[str, float], epoch: int) -> None:
        """One metrics.csv row to the tracker, at step = epoch."""
        if self.tracker is not None:
            self.tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, epoch)

    def _draw(self, history: list[dict[str, float]], net: SegmentationNet, device: torch.device) -> None:
        plot_curves(history, self.run_dir / "curves.png")
        if len(self.indices):
            self._samples(int(history[-1]["epoch"]), net, device)
        self.drawn_at, self.drawn_epoch = time.monotonic(), int(history[-1]["epoch"])

    def _samples(self, epoch: int, net: SegmentationNet, device: torch.device) -> None:
        engine = Predictor(SavedModel(net, self.preprocess), torch_device=device, tile=self.tile)
        items = ((i, self.val_set.images[i], self.val_set.masks[i]) for i in self.indices)
        shown = list(predict_labelled(engine, items, postprocess=False))
        path = self.run_dir / "samples" / f"epoch_{epoch:04d}.png"
        overlay_sheet([item.image for item in shown], [label_map(item.truth, channel_axis=-1) for item in shown],
                      [label_map(item.mask) for item in shown],
                      [f"{self.val_set.stems[i]} (epoch {epoch})" for i in self.indices], path)
        if self.writer is not None:
            from PIL import Image

            self.writer.add_image("validation_samples", np.asarray(Image.open(path).convert("RGB")), epoch,
                                  dataformats="HWC")

    def close(self, history: list[dict[str, float]], net: SegmentationNet, device: torch.device) -> None:
        """The last epoch's pictures, if the interval skipped them, then the TensorBoard writer closed."""
        if history and int(history[-1]["epoch"]) != self.drawn_epoch:
            self._draw(history, net, device)
        if self.writer is not None:
            self.writer.close()
