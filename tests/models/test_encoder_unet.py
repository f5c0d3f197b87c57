"""Encoder U-Net (arch "unet"): shapes, options by parameter count, weights, files, ONNX, tiling."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from unetkit.config import ModelConfig
from unetkit.data.preprocess import identity_preprocess
from unetkit.errors import UserError
from unetkit.export.model_file import load_model, save_model
from unetkit.models import build_model, count_parameters
from unetkit.models.encoder_unet import EncoderUNet, gate_logits

RESNET18 = ModelConfig(arch="unet", encoder="resnet18")
RESNET18_PARAMETERS = 14_321_809  # encoder 11,170,240 (timm's resnet18 less fc, 1-channel stem) + decoder and head


def test_resnet34_parameter_count() -> None:
    # smp's Unet("resnet34", in_channels=3) has 24,436,369: ours with 3 channels is 128 fewer (1x1 head).
    assert count_parameters(EncoderUNet(ModelConfig(arch="unet", encoder="resnet34"))) == 24_429_969
    assert count_parameters(EncoderUNet(ModelConfig(arch="unet", encoder="resnet34", in_channels=3))) == 24_436_241


@pytest.mark.parametrize("height,width", [(101, 101), (37, 50), (64, 64), (1, 9)])
def test_output_has_the_input_size(height: int, width: int) -> None:
    net = EncoderUNet(RESNET18).eval()
    assert net(torch.zeros(2, 1, height, width)).shape == (2, 1, height, width)


@pytest.mark.parametrize("encoder,first_stride", [("efficientnet_b0", 2), ("convnext_tiny", 4)])
def test_other_encoders_reach_stride_one(encoder: str, first_stride: int) -> None:
    net = EncoderUNet(ModelConfig(arch="unet", encoder=encoder, num_classes=3)).eval()
    assert net.encoder.feature_info.reduction()[0] == first_stride and net.strides[-1] == 1
    assert net.multiple == 32
    assert net(torch.zeros(2, 1, 37, 50)).shape == (2, 3, 37, 50)


@pytest.mark.parametrize("option,added", [
    # scSE on 256, 128, 64, 32, 16 channels: channel MLP C*C/16*2 + C/16 + C, spatial C + 1
    ({"attention": "scse"}, 8_721 + 2_313 + 645 + 195 + 66),
    ({"hypercolumn": True}, 256 + 128 + 64 + 32),  # head reads 496 channels instead of 16
    ({"deep_supervision": True}, 257 + 129 + 65 + 33),  # a 1x1 head per decoder level but the last
    ({"classification_head": True}, 512 + 1),  # linear on the 512-channel global average
])
def test_each_option_adds_its_parameters(option: dict, added: int) -> None:
    assert count_parameters(EncoderUNet(RESNET18)) == RESNET18_PARAMETERS
    assert count_parameters(EncoderUNet(dataclasses.replace(RESNET18, **option))) == RESNET18_PARAMETERS + added


def test_training_outputs_shapes_and_logits_equal_forward() -> None:
    config = dataclasses.replace(RESNET18, num_classes=2, attention="scse", hypercolumn=True, deep_supervision=True,
                                 classification_head=True)
    net = EncoderUNet(config).eval()
    x = torch.randn(2, 1, 37, 50)
    out = net.training_outputs(x)
    assert out.logits.shape == (2, 2, 37, 50) and torch.equal(out.logits, ungated(net)(x))
    assert [a.shape for a in out.aux_logits] == [(2, 2, 37, 50)] * 4
    assert out.image_logit is not None and out.image_logit.shape == (2, 2)
    plain = EncoderUNet(RESNET18).training_outputs(x)
    assert plain.aux_logits == [] and plain.image_logit is None


def ungated(net: EncoderUNet) -> EncoderUNet:
    """The same net (shared weights) with the image gate off."""
    twin = EncoderUNet(dataclasses.replace(net.config, image_gate=False)).eval()
    twin.load_state_dict(net.state_dict())
    return twin


@pytest.mark.parametrize("a", [-30.0, -4.0, 0.0, 2.5, 30.0])
@pytest.mark.parametrize("c", [-30.0, -1.0, 0.0, 3.0, 30.0])
def test_sigmoid_gate_is_the_product_of_the_probabilities(a: float, c: float) -> None:
    gated = gate_logits(torch.full((1, 1, 2, 2), a), torch.tensor([[c]]), exclusive=False)
    product = torch.sigmoid(torch.tensor(a)) * torch.sigmoid(torch.tensor(c))
    assert torch.isfinite(gated).all()
    assert torch.sigmoid(gated) == pytest.approx(torch.full((1, 1, 2, 2), product.item()), rel=1e-5, abs=1e-30)


def test_softmax_gate_hands_an_absent_class_to_the_others() -> None:
    logits = torch.tensor([0.5, 2.0, 1.0]).view(1, 3, 1, 1)
    image = torch.tensor([[9.0, -2.0, 40.0]])  # class 1 unlikely (sigmoid 0.119), class 2 sure
    probabilities = torch.softmax(gate_logits(logits, image, exclusive=True), dim=1).flatten()
    weights = torch.softmax(logits, dim=1).flatten() * torch.tensor([1.0, torch.sigmoid(torch.tensor(-2.0)).item(), 1.0])
    assert probabilities == pytest.approx(weights / weights.sum(), rel=1e-5)


@pytest.mark.parametrize("bias,empty", [(-30.0, True), (30.0, False)])
def test_the_image_gate_decides_empty_images(bias: float, empty: bool) -> None:
    net = EncoderUNet(dataclasses.replace(RESNET18, classification_head=True)).eval()
    with torch.no_grad():
        net.image_head.weight.zero_()
        net.image_head.bias.fill_(bias)
        net.head.bias.fill_(5.0)  # every pixel says "salt" on its own (probability ~0.99)
    x = torch.randn(2, 1, 37, 50)
    probabilities = torch.sigmoid(net(x))
    if empty:
        assert probabilities.max() < 1e-12
    else:
        assert torch.allclose(net(x), ungated(net)(x), atol=1e-5) and probabilities.min() > 0.5


def test_the_gate_reaches_tiled_and_flipped_predictions(tmp_path: Path) -> None:
    from unetkit.inference.predictor import Predictor

    net = EncoderUNet(dataclasses.replace(RESNET18, classification_head=True)).eval()
    with torch.no_grad():
        net.image_head.weight.zero_()
        net.image_head.bias.fill_(-30.0)  # "nothing here", whatever the tile
        net.head.bias.fill_(5.0)
    save_model(tmp_path / "m.safetensors", net, identity_preprocess(1))
    predictor = Predictor(load_model(tmp_path / "m.safetensors"), device="cpu", tile=128, tta="flips")
    images = np.random.default_rng(0).integers(0, 255, (1, 300, 300, 1), dtype=np.uint8)
    assert predictor.needs_tiles(300, 300) and predictor.probabilities(images).max() < 1e-9


def test_a_model_file_from_before_the_gate_still_predicts_from_the_pixels(tmp_path: Path) -> None:
    import json

    from safetensors import safe_open

    net = EncoderUNet(dataclasses.replace(RESNET18, classification_head=True)).eval()
    save_model(tmp_path / "m.safetensors", net, identity_preprocess(1))
    with safe_open(str(tmp_path / "m.safetensors"), "pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    fields = json.loads(metadata["model"])
    del fields["image_gate"]
    save_file(tensors, str(tmp_path / "old.safetensors"), {**metadata, "model": json.dumps(fields)})
    old, new = load_model(tmp_path / "old.safetensors"), load_model(tmp_path / "m.safetensors")
    assert (old.config.image_gate, new.config.image_gate) == (False, True)
    x = torch.randn(1, 1, 37, 50)
    assert torch.equal(old.net(x), ungated(net)(x)) and torch.equal(new.net(x), net(x))


def test_training_step_reaches_every_parameter() -> None:
    config = dataclasses.replace(RESNET18, attention="scse", deep_supervision=True, classification_head=True)
    net = EncoderUNet(config).train()
    out = net.training_outputs(torch.randn(2, 1, 64, 64))
    (out.logits.mean() + sum(a.mean() for a in out.aux_logits) + out.image_logit.mean()).backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_input_channels(channels: int) -> None:
    net = EncoderUNet(dataclasses.replace(RESNET18, in_channels=channels)).eval()
    assert net(torch.zeros(2, channels, 37, 50)).shape == (2, 1, 37, 50)
    mean, std = net.input_mean_std
    assert len(mean) == len(std) == channels
    if channels == 1:
        assert mean[0] == pytest.approx((0.485 + 0.456 + 0.406) / 3)
    else:
        assert mean[:3] == (0.485, 0.456, 0.406) and mean[channels - 1] == mean[(channels - 1) % 3]


def test_unknown_encoder_and_attention_name_the_field() -> None:
    with pytest.raises(UserError, match=r"model\.encoder.*'resnet35'.*did you mean"):
        EncoderUNet(dataclasses.replace(RESNET18, encoder="resnet35"))
    with pytest.raises(UserError, match=r"model\.attention"):
        EncoderUNet(dataclasses.replace(RESNET18, attention="cbam"))


def test_pretrained_file_round_trip(tmp_path: Path) -> None:
    source = EncoderUNet(RESNET18).eval()
    path = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in source.encoder.state_dict().items()}, str(path))
    loaded = EncoderUNet(dataclasses.replace(RESNET18, pretrained=str(path))).eval()
    loaded.load_state_dict({k: v for k, v in source.state_dict().items() if not k.startswith("encoder.")}, strict=False)
    x = torch.randn(2, 1, 37, 50)
    assert torch.equal(loaded(x), source(x))


def test_pretrained_file_in_timm_classifier_layout(tmp_path: Path) -> None:
    # What timm's hub publishes: the whole classifier, 3 input channels; timm drops fc and fits the stem.
    import timm

    classifier = timm.create_model("resnet18")
    path = tmp_path / "model.safetensors"
    save_file(classifier.state_dict(), str(path))
    net = EncoderUNet(dataclasses.replace(RESNET18, pretrained=str(path)))
    assert torch.equal(net.encoder.layer4[1].conv2.weight, classifier.layer4[1].conv2.weight)
    assert torch.allclose(net.encoder.conv1.weight, classifier.conv1.weight.sum(dim=1, keepdim=True))


def test_pretrained_file_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"missing\.safetensors': file not found"):
        EncoderUNet(dataclasses.replace(RESNET18, pretrained=str(tmp_path / "missing.safetensors")))
    wrong = tmp_path / "wrong.safetensors"
    save_file({"conv1.weight": torch.zeros(3, 3, 3, 3)}, str(wrong))
    with pytest.raises(UserError, match=r"wrong\.safetensors': weights do not fit encoder 'resnet18'"):
        EncoderUNet(dataclasses.replace(RESNET18, pretrained=str(wrong)))
    not_safetensors = tmp_path / "weights.pth"
    not_safetensors.write_bytes(b"\x80\x04")
    with pytest.raises(UserError, match=r"weights\.pth'.*\.safetensors file"):
        EncoderUNet(dataclasses.replace(RESNET18, pretrained=str(not_safetensors)))


def test_imagenet_offline_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm.models._hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args: object, **kwargs: object) -> None:
        raise LocalEntryNotFoundError("Cannot reach the Hub and the file is not in the local cache.")

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", offline)
    with pytest.raises(UserError, match=r"'imagenet'.*resnet18.*set model\.pretrained to its path") as info:
        EncoderUNet(dataclasses.replace(RESNET18, pretrained="imagenet"))
    assert "\n" not in str(info.value)


def test_model_file_round_trip_needs_no_pretrained_source(tmp_path: Path) -> None:
    weights = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in EncoderUNet(RESNET18).encoder.state_dict().items()}, str(weights))
    config = dataclasses.replace(RESNET18, pretrained=str(weights), attention="scse", hypercolumn=True)
    net = build_model(config).eval()
    save_model(tmp_path / "m.safetensors", net, identity_preprocess(1))
    weights.unlink()  # the model file carries every weight
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.config == config
    x = torch.randn(2, 1, 37, 50)
    assert torch.equal(loaded.net(x), net(x))


@pytest.mark.parametrize("config", [RESNET18, dataclasses.replace(RESNET18, classification_head=True),
                                    dataclasses.replace(RESNET18, classification_head=True, num_classes=3)],
                         ids=["plain", "gated", "gated-softmax"])
def test_onnx_parity(tmp_path: Path, config: ModelConfig) -> None:
    from unetkit.export.onnx import export_onnx

    save_model(tmp_path / "m.safetensors", EncoderUNet(config).eval(), identity_preprocess(1))
    assert export_onnx(tmp_path / "m.safetensors", tmp_path / "m.onnx") < 1e-4


def test_tiled_prediction(tmp_path: Path) -> None:
    from unetkit.inference.predictor import Predictor

    save_model(tmp_path / "m.safetensors", EncoderUNet(RESNET18).eval(), identity_preprocess(1))
    predictor = Predictor(load_model(tmp_path / "m.safetensors"), device="cpu", tile=128)
    assert predictor.needs_tiles(300, 300)
    images = np.random.default_rng(0).integers(0, 255, (1, 300, 300, 1), dtype=np.uint8)
    prob = predictor.probabilities(images)
    assert prob.shape == (1, 1, 300, 300) and 0.0 <= prob.min() and prob.max() <= 1.0
