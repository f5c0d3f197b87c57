"""Several trained networks of one architecture acting as one (k-fold ensembles, snapshots). Members'
probabilities are averaged and returned as logits again (outputs.py), so everything downstream
(thresholds, argmax, TTA, the ONNX export) treats an ensemble like one network."""

from __future__ import annotations

import torch
from torch import nn

from unetkit.config import ModelConfig
from unetkit.models.base import SegmentationNet
from unetkit.outputs import as_logits, probabilities, uses_sigmoid


class Ensemble(nn.Module):
    """(B, C, H, W) -> logits of the members' mean probability, (B, K, H, W)."""

    def __init__(self, members: list[SegmentationNet]) -> None:
        super().__init__()
        if not members or any(m.config != members[0].config for m in members):
            raise ValueError("an ensemble needs at least one member, all of one architecture")
        self.members = nn.ModuleList(members)

    @property
    def config(self) -> ModelConfig:
        return self.members[0].config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.stack([probabilities(member(x), self.config) for member in self.members]).mean(0)
        return as_logits(mean, self.config, eps=1e-6 if uses_sigmoid(self.config) else 1e-12)
