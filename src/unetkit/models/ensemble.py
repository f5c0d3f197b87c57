"""Several trained U-Nets of one architecture acting as one (k-fold ensembles).

Members' probabilities are averaged (sigmoid or softmax) and returned as logits again,
so everything downstream (thresholds, argmax, TTA) treats an ensemble like one network.
"""

from __future__ import annotations

import torch
from torch import nn

from unetkit.config import ModelConfig
from unetkit.models.unet import UNet


class Ensemble(nn.Module):
    """(B, C, H, W) -> logits of the members' mean probability, (B, K, H, W)."""

    def __init__(self, members: list[UNet]) -> None:
        super().__init__()
        if not members or any(m.config != members[0].config for m in members):
            raise ValueError("an ensemble needs at least one member, all of one architecture")
        self.members = nn.ModuleList(members)

    @property
    def config(self) -> ModelConfig:
        return self.members[0].config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = [member(x) for member in self.members]
        if self.config.sigmoid:
            mean = torch.stack([torch.sigmoid(z) for z in logits]).mean(0)
            return torch.logit(mean, eps=1e-6)
        mean = torch.stack([torch.softmax(z, dim=1) for z in logits]).mean(0)
        return torch.log(mean.clamp(min=1e-12))
