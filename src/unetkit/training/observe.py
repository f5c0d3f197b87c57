"""What a person watches during training: curves, predictions on fixed validation samples,
and optionally TensorBoard (learning rate, throughput and every metric per epoch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit.config import TrainConfig
from unetkit.data.dataset import LabelledSet
from unetkit.data.preprocess import Preprocess
from unetkit.errors import UserError
from unetkit.visualize import label_map, overlay_sheet, plot_curves

SAMPLES = 4


class EpochObserver:
    """Writes curves.png, samples/epoch_NNNN.png and (optionally) TensorBoard events after each epoch."""

    def __init__(self, run_dir: Path, config: TrainConfig, val_set: LabelledSet, preprocess: Preprocess) -> None:
        self.run_dir = run_dir
        # Fixed samples: the validation images with the most foreground, then some empty ones, chosen once.
        order = np.argsort(-val_set.coverage(), kind="stable")
        self.indices = np.concatenate([order[: SAMPLES - 1], order[-1:]])[:SAMPLES] if len(order) else order
        self.val_set = val_set
        self.preprocess = preprocess
        self.writer = _tensorboard(run_dir) if config.tensorboard else None

    def epoch_done(self, history: list[dict[str, float]], net: torch.nn.Module, device: torch.device) -> None:
        plot_curves(history, self.run_dir / "curves.png")
        row = history[-1]
        if len(self.indices):
            self._samples(int(row["epoch"]), net, device)
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, int(row["epoch"]))
            self.writer.flush()

    @torch.no_grad()
    def _samples(self, epoch: int, net: torch.nn.Module, device: torch.device) -> None:
        net.eval()
        images = self.val_set.images[self.indices]
        logits = net(self.preprocess.to_tensor(images).to(device, memory_format=torch.channels_last))
        if net.config.multilabel:
            preds = [label_map(p) for p in (logits > 0).to(torch.uint8).cpu().numpy()]
            truths = [label_map(t, channel_axis=2) for t in self.val_set.masks[self.indices]]
        else:
            preds = list((logits[:, 0] > 0 if logits.shape[1] == 1 else logits.argmax(1)).to(torch.uint8).cpu().numpy())
            truths = list(self.val_set.masks[self.indices])
        path = self.run_dir / "samples" / f"epoch_{epoch:04d}.png"
        overlay_sheet(list(images), truths, preds,
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
