"""timm without torchvision: the stand-in's FrozenBatchNorm2d, a clean sys.modules, one-line errors."""

from __future__ import annotations

import sys

import pytest
import torch

from unetkit.errors import UserError
from unetkit.models.timm_encoder import FrozenBatchNorm2d, import_timm


def test_frozen_batch_norm_equals_batch_norm_in_eval_mode() -> None:
    bn = torch.nn.BatchNorm2d(5, eps=1e-3).eval()
    with torch.no_grad():
        for tensor in (bn.weight, bn.bias, bn.running_mean):
            tensor.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    frozen = FrozenBatchNorm2d(5, eps=1e-3)
    frozen.load_state_dict(bn.state_dict())  # num_batches_tracked is dropped, as torchvision does
    x = torch.randn(2, 5, 7, 9)
    assert torch.allclose(frozen(x), bn(x), atol=1e-6)
    assert list(frozen.parameters()) == [] and repr(frozen) == "FrozenBatchNorm2d(5, eps=0.001)"


def test_timm_freezes_batch_norm_and_torchvision_stays_absent() -> None:
    timm = import_timm()
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    frozen = timm.layers.freeze_batch_norm_2d(net)
    x = torch.randn(1, 1, 8, 8)
    assert isinstance(frozen[1], timm.layers.norm_act.FrozenBatchNorm2d) and torch.allclose(frozen(x), net(x))
    try:
        import torchvision  # noqa: F401
    except Exception:  # absent or broken here: the stand-in must not pretend otherwise
        assert not any(name.split(".")[0] == "torchvision" for name in sys.modules)


def test_missing_timm_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` fail as if not installed
    with pytest.raises(UserError, match=r"^arch 'unet' needs timm: pip install 'unetkit\[encoders\]'$"):
        import_timm()
