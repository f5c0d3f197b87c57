from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from unetkit.data.preprocess import Preprocess
from unetkit.errors import UserError
from unetkit.export import tensor_tree
from unetkit.export.model_file import load_model, save_model
from unetkit.models import UNet


def test_round_trip_keeps_weights_architecture_preprocess_and_threshold(tmp_path: Path) -> None:
    net = UNet(in_channels=3, num_classes=2, start_neurons=4, depth=3, batch_norm=True).eval()
    pre = Preprocess((0.1, 0.2, 0.3), (0.5, 0.6, 0.7), "resize", 64)
    save_model(tmp_path / "m.safetensors", net, pre, threshold=0.37, training={"epochs": 3})
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.config == net.config and loaded.preprocess == pre
    assert loaded.threshold == 0.37 and loaded.training == {"epochs": 3}
    x = torch.randn(1, 3, 24, 24)
    assert torch.equal(loaded.net(x), net(x))
    assert (tmp_path / "m.safetensors").read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle


def test_pickle_renamed_safetensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(UserError, match=r"evil\.safetensors: not a safetensors file"):
        load_model(path)


def test_foreign_safetensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(UserError, match="not a unetkit file"):
        load_model(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="model file not found"):
        load_model(tmp_path / "none.safetensors")


def test_optimizer_state_survives_the_pickle_free_tree() -> None:
    net = UNet(start_neurons=2, depth=2)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    net(torch.randn(2, 1, 8, 8)).mean().backward()
    optimizer.step()
    tensors: dict[str, torch.Tensor] = {}
    text = tensor_tree.dumps(optimizer.state_dict(), "opt", tensors)
    restored = tensor_tree.loads(text, tensors)
    fresh = torch.optim.Adam(net.parameters(), lr=0.5)
    fresh.load_state_dict(restored)
    assert fresh.param_groups[0]["lr"] == 0.01
    original = optimizer.state_dict()["state"][0]["exp_avg_sq"]
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg_sq"], original)
    assert tensor_tree.loads(tensor_tree.dumps({"best": float("inf"), "t": (1, "a")}, "x", {}), {}) == {
        "best": float("inf"), "t": (1, "a")}
