from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from unetkit.cli.main import main
from unetkit.data.preprocess import Preprocess
from unetkit.export.model_file import load_model, save_model
from unetkit.models import UNet


@pytest.mark.parametrize("num_classes", [1, 3])
def test_onnx_probabilities_match_pytorch(tmp_path: Path, num_classes: int, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "m.safetensors"
    classes = [{"name": n, "color": c} for n, c in (("bg", [0, 0, 0]), ("a", [255, 0, 0]), ("b", [0, 255, 0]))]
    save_model(model, UNet(num_classes=num_classes), Preprocess((0.47,), (0.16,)), threshold=0.61,
               postprocess={"min_area": 20} if num_classes == 1 else {},
               training={"classes": classes if num_classes == 3 else []})
    out = tmp_path / "m.onnx"
    assert main(["-q", "export", "--model", str(model), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max abs difference of probabilities" in printed
    assert float(printed.split()[-1]) < 1e-4
    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert float(metadata["threshold"]) == 0.61 and json.loads(metadata["preprocess"])["mean"] == [0.47]
    assert json.loads(metadata["model"])["num_classes"] == num_classes
    assert len(json.loads(metadata["classes"])) == (3 if num_classes == 3 else 0)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    net = load_model(model).net
    for shape in [(1, 1, 101, 101), (3, 1, 300, 517)]:  # dynamic batch, height and width
        x = torch.randn(*shape)
        with torch.inference_mode():
            logits = net(x)
            expected = (torch.sigmoid(logits) if num_classes == 1 else torch.softmax(logits, 1)).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        assert got.shape == (shape[0], num_classes, *shape[2:])
        assert np.abs(got - expected).max() < 1e-4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
