from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from unetkit.data.preprocess import Preprocess
from unetkit.errors import UserError
from unetkit.export import tensor_tree
from unetkit.export.model_file import load_model, save_ensemble, save_model
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


def _tampered(tmp_path: Path, change) -> Path:
    """A valid tiny model file, then `change(tensors, metadata)` applied to its contents."""
    from safetensors import safe_open

    good = tmp_path / "good.safetensors"
    save_model(good, UNet(start_neurons=2, depth=2), Preprocess((0.5,), (0.25,)), threshold=0.4,
               postprocess={"min_area": 3, "empty_below": 0}, training={"classes": [{"name": "salt", "color": None}]})
    with safe_open(str(good), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = dict(handle.metadata())
    change(tensors, metadata)
    path = tmp_path / "tampered.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    return path


def _set(key: str, value: str):
    return lambda tensors, metadata: metadata.__setitem__(key, value)


def _json_edit(key: str, edit):
    import json

    def change(tensors, metadata):
        data = json.loads(metadata[key])
        edit(data)
        metadata[key] = json.dumps(data)
    return change


TAMPERED = {
    "threshold nan": (_set("threshold", "nan"), "threshold nan"),
    "threshold 5": (_set("threshold", "5"), "threshold 5.0 must lie in [0, 1]"),
    "std 0": (_json_edit("preprocess", lambda d: d.update(std=[0.0])), "std > 0"),
    "mean NaN": (_json_edit("preprocess", lambda d: d.update(mean=[float("nan")])), "must be finite"),
    "3-channel mean in a 1-channel model": (_json_edit("preprocess", lambda d: d.update(mean=[0.1] * 3, std=[1.0] * 3)),
                                            "3 means and 3 stds for 1 channel"),
    "clip low above high": (_json_edit("preprocess", lambda d: d.update(clip_low=[2.0], clip_high=[1.0])),
                            "low < high"),
    "clip NaN": (_json_edit("preprocess", lambda d: d.update(clip_low=[float("nan")], clip_high=[1.0])),
                 "must be finite"),
    "resize_to 1e9": (_json_edit("preprocess", lambda d: d.update(resize_to=10**9)), "resize_to 1000000000"),
    "members 100000": (_set("members", "100000"), "members 100000 must lie in 0..64"),
    "members -3": (_set("members", "-3"), "members -3"),
    "postprocess unknown key": (_set("postprocess", '{"min_area": 3, "erode": 2}'), "only min_area and empty_below"),
    "postprocess negative": (_set("postprocess", '{"min_area": -3}'), "pixel counts >= 0"),
    "classes not a list of names": (_json_edit("training", lambda d: d.update(classes=[{"color": [1, 2]}])),
                                    "training.classes entry"),
    "NaN weights": (lambda t, m: t["head.weight"].fill_(float("nan")), "head.weight holds NaN"),
    "integer weights": (lambda t, m: t.__setitem__("head.weight", t["head.weight"].to(torch.int32)),
                        "head.weight has dtype torch.int32"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_model_files_are_refused_with_one_line(tmp_path: Path, case: str) -> None:
    change, message = TAMPERED[case]
    path = _tampered(tmp_path, change)
    with pytest.raises(UserError, match="tampered.safetensors: model metadata is incomplete or invalid") as error:
        load_model(path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_model_file_from_before_architectures_loads_as_the_seed(tmp_path: Path) -> None:
    import json

    def drop_arch(tensors, metadata):  # files written before model.arch existed
        model = json.loads(metadata["model"])
        for key in ("arch", "encoder", "pretrained", "attention", "hypercolumn", "deep_supervision",
                    "classification_head"):
            model.pop(key)
        metadata["model"] = json.dumps(model)
    saved = load_model(_tampered(tmp_path, drop_arch))
    assert saved.config.arch == "seed_unet" and isinstance(saved.net, UNet) and saved.threshold == 0.4


def test_a_full_disk_is_one_line_and_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors import SafetensorError

    import unetkit.export.model_file as model_file

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")

    monkeypatch.setattr(model_file, "save_file", full)
    with pytest.raises(UserError, match="m.safetensors: cannot write .*No space left on device"):
        save_model(tmp_path / "m.safetensors", UNet(start_neurons=2, depth=2), Preprocess((0.5,), (0.25,)))
    assert list(tmp_path.iterdir()) == []


def test_an_ensemble_file_loads_its_members_in_order(tmp_path: Path) -> None:
    from unetkit.models.ensemble import Ensemble

    torch.manual_seed(0)
    nets = [UNet(start_neurons=2, depth=2).eval() for _ in range(2)]
    save_ensemble(tmp_path / "e.safetensors", nets, Preprocess((0.5,), (0.25,)), threshold=0.3)
    loaded = load_model(tmp_path / "e.safetensors")
    x = torch.randn(1, 1, 16, 16)
    assert isinstance(loaded.net, Ensemble) and len(loaded.net.members) == 2 and loaded.threshold == 0.3
    assert torch.equal(loaded.net.members[1](x), nets[1](x)) and torch.equal(loaded.net(x), Ensemble(nets)(x))
