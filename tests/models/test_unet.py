from __future__ import annotations

import pytest
import torch

from unetkit.config import ModelConfig
from unetkit.models import ARCHITECTURES, PRESETS, UNet, build_model, count_parameters, create_model
from unetkit.models.registry import check_arch


def test_seed_has_exactly_the_keras_parameter_count() -> None:
    assert count_parameters(UNet()) == 2_158_417


def test_seed_layers_match_the_keras_listing() -> None:
    net = UNet()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    transposed = [m for m in net.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    # 4 levels x 2 + middle 2 + 4 decoder levels x 2 + head = 19 convolutions; 4 transposed.
    assert len(convs) == 19 and len(transposed) == 4
    assert [c.out_channels for c in convs[:10]] == [16, 16, 32, 32, 64, 64, 128, 128, 256, 256]
    assert convs[-1].kernel_size == (1, 1) and convs[-1].out_channels == 1
    assert all(t.kernel_size == (3, 3) and t.stride == (2, 2) for t in transposed)
    dropouts = [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts == [0.25, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]


@pytest.mark.parametrize("height,width", [(101, 101), (1, 37), (17, 300), (64, 64), (5, 3)])
def test_output_has_the_input_size(height: int, width: int) -> None:
    net = UNet(start_neurons=2).eval()
    assert net(torch.zeros(2, 1, height, width)).shape == (2, 1, height, width)


def test_multiclass_rgb_output_shape() -> None:
    net = UNet(in_channels=3, num_classes=4, start_neurons=4, depth=3, batch_norm=True, upsampling="bilinear").eval()
    assert net(torch.zeros(1, 3, 50, 70)).shape == (1, 4, 50, 70)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_runs(name: str) -> None:
    net = create_model(name).eval()
    assert net(torch.zeros(1, 1, 33, 33)).shape == (1, 1, 33, 33)
    assert count_parameters(net) > 100_000


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_builds_and_keeps_the_input_size(arch: str) -> None:
    # One case per registered architecture (timm's tests/test_models.py style), with its defaults.
    net = build_model(ModelConfig(arch=arch)).eval()
    assert net.config.arch == arch
    assert net(torch.zeros(1, 1, 37, 50)).shape == (1, 1, 37, 50)


def test_half_width_parameter_count_by_hand() -> None:
    # start_neurons=8: encoder 294,904 (80+584, 1168+2320, 4640+9248, 18496+36928, middle 73856+147584);
    # decoder 73792+73792+36928, 18464+18464+9248, 4624+4624+2320, 1160+1160+584; head 9.
    assert count_parameters(UNet(start_neurons=8)) == 540_073


def test_invalid_config_names_the_field() -> None:
    from unetkit.errors import UserError

    with pytest.raises(UserError, match="model.upsampling"):
        check_arch(ModelConfig(upsampling="nearest"))
    with pytest.raises(UserError, match="model.upsampling"):
        UNet(upsampling="nearest")
