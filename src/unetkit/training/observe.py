"""What a person watches during training: curves, predictions on fixed validation samples,
and optionally TensorBoard (learning rate, throughput and every metric per epoch) and MLflow
(unetkit/tracking.py: the config once, then every metrics.csv row)."""

from __future__ import annotations

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
from unetkit.visualize import label_map, overlay_sheet, plot_curves

SAMPLES = 4


class EpochObserver:
    """Writes curves.png, samples/epoch_NNNN.png and (optionally) TensorBoard events after each epoch."""

    def __init__(self, run_dir: Path, config: TrainConfig, val_set: LabelledSet, preprocess: Preprocess,
                 tile: int | None = None) -> None:
        self.run_dir = run_dir
        # Fixed samples: the validation images with the most foreground, then some empty ones, chosen once.
        order = np.argsort(-val_set.coverage(), kind="stable")
        self.indices = np.concatenate([order[: SAMPLES - 1], order[-1:]])[:SAMPLES] if len(order) else order
        self.val_set = val_set
        self.preprocess = preprocess
        self.tile = tile
        self.writer = _tensorboard(run_dir) if config.runtime.tensorboard else None
        self.tracker = tracking.start_training(run_dir, to_dict(config)) if config.runtime.track == "mlflow" else None

    def epoch_done(self, history: list[dict[str, float]], net: SegmentationNet, device: torch.device) -> None:
        plot_curves(history, self.run_dir / "curves.png")
        row = history[-1]
        if len(self.indices):
            self._samples(int(row["epoch"]), net, device)
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, int(row["epoch"]))
            self.writer.flush()

    def track(self, row: dict[str, float], epoch: int) -> None:
        """One metrics.csv row to the tracker, at step = epoch."""
        if self.tracker is not None:
            self.tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, epoch)

    def _samples(self, epoch: int, net: SegmentationNet, device: torch.device) -> None:
        engine = Predictor(SavedModel(net, self.preprocess), torch_device=device, tile=self.tile)
        items = ((i, self.val_set.images[i], self.val_set.masks[i]) for i in self.indices)
        shown = list(predict_labelled(engine, items, postprocess=False))
        truths = [label_map(item.truth, channel_axis=-1) for item in shown]
        preds = [label_map(item.mask) for item in shown]
        path = self.run_dir / "samples" / f"epoch_{epoch:04d}.png"
        overlay_sheet([item.image for item in shown], truths, preds,
                      [f"{self.val_set.stems[i]} (epoch {epoch})" for i in self.indices], path)
        if self.writer is not None:
            from PIL import Image

            self.writer.add_image("validation_samples", np.asarray(Image.open(path).convert("RGB")), epoch,
                                  dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("tensorboard: true needs the tensorboard package (pip install 'unetkit[tensorboard]')") from None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))
