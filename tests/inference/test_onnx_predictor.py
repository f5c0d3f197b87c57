"""predict and evaluate through onnxruntime: the same masks as PyTorch, and no torch imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetkit.cli.main import main
from unetkit.data.io import read_array
from unetkit.data.preprocess import Preprocess
from unetkit.export.model_file import load_model, save_model
from unetkit.inference.onnx_predictor import OnnxPredictor, load_onnx
from unetkit.inference.predictor import Predictor
from unetkit.models import UNet

# Runs the CLI with every `import torch` failing: the ONNX path must not need PyTorch at all.
WITHOUT_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, NoTorch())
from unetkit.cli.main import main
code = main(sys.argv[1:])
assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
sys.exit(code)
"""

CLASSES = [{"name": n, "color": c} for n, c in (("bg", [0, 0, 0]), ("a", [255, 0, 0]), ("b", [0, 255, 0]))]


def exported(tmp_path: Path, num_classes: int, in_channels: int = 1, size_policy: str = "pad") -> tuple[Path, Path]:
    """A random seed-architecture model saved and exported: (model.safetensors, model.onnx)."""
    model = tmp_path / f"m{num_classes}.safetensors"
    save_model(model, UNet(num_classes=num_classes, in_channels=in_channels),
               Preprocess((0.45,) * in_channels, (0.2,) * in_channels, size_policy), threshold=0.5,
               postprocess={"min_area": 15} if num_classes == 1 else {},
               training={"classes": CLASSES if num_classes == 3 else []})
    onnx_path = tmp_path / f"m{num_classes}.onnx"
    assert main(["-q", "export", "--model", str(model), "--out", str(onnx_path)]) == 0
    return model, onnx_path


def image_folder(tmp_path: Path) -> Path:
    """Mixed sizes: two 101x101 (batched whole) and one 300x517 (tiled at --tile 128)."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in (("a", (101, 101)), ("b", (101, 101)), ("big", (300, 517))):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


@pytest.mark.parametrize("num_classes", [1, 3])
def test_predict_through_onnx_writes_the_pytorch_masks_without_importing_torch(tmp_path: Path,
                                                                                num_classes: int) -> None:
    model, onnx_path = exported(tmp_path, num_classes)
    images = image_folder(tmp_path)
    flags = ["--input", str(images), "--tile", "128", "--tta", "flips", "--device", "cpu"]
    done = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, "-q", "predict", "--model", str(onnx_path),
                           "--out", str(tmp_path / "onnx"), "--rle", str(tmp_path / "onnx.csv"), *flags],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert main(["-q", "predict", "--model", str(model), "--out", str(tmp_path / "torch"),
                 "--rle", str(tmp_path / "torch.csv"), *flags]) == 0
    for name in ("a.png", "b.png", "big.png"):
        onnx_mask, torch_mask = read_array(tmp_path / "onnx" / name), read_array(tmp_path / "torch" / name)
        assert onnx_mask.shape[:2] == read_array(images / name).shape[:2]
        assert np.array_equal(onnx_mask, torch_mask), name
    assert (tmp_path / "onnx.csv").read_text() == (tmp_path / "torch.csv").read_text()
    rows = (tmp_path / "onnx.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * (1 if num_classes == 1 else 2)  # header; per image one row per foreground class


def test_onnx_probabilities_equal_pytorch_tiled_with_tta(tmp_path: Path) -> None:
    model, onnx_path = exported(tmp_path, 1, in_channels=3)
    image = np.random.default_rng(1).integers(0, 65535, (300, 517, 3), dtype=np.uint16)
    options = {"tile": 128, "overlap": 0.25, "tta": "d4", "device": "cpu", "batch_size": 3}
    expected = Predictor(load_model(model), **options).probabilities(image[None])
    got = OnnxPredictor(load_onnx(onnx_path), **options).probabilities(image[None])
    assert got.shape == expected.shape == (1, 1, 300, 517)
    assert np.abs(got - expected).max() < 1e-4


def test_evaluate_takes_an_onnx_model(tmp_path: Path, synthetic_dir: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    model, onnx_path = exported(tmp_path, 1)
    capsys.readouterr()  # the export's parity line
    figures = []
    for path in (model, onnx_path):
        assert main(["-q", "evaluate", "--model", str(path), "--data", str(synthetic_dir), "--json",
                     "--csv", str(tmp_path / "e.csv")]) == 0
        figures.append(capsys.readouterr().out)
    assert figures[0] == figures[1] and '"n_images": 12' in figures[0]


def test_onnx_files_unetkit_cannot_apply_are_refused_in_one_line(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import onnx

    _, onnx_path = exported(tmp_path, 1)
    graph = onnx.load(str(onnx_path))
    del graph.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(graph, str(foreign))
    _, resizing = exported(tmp_path / "r" if (tmp_path / "r").mkdir() is None else tmp_path, 3, size_policy="resize")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    images = image_folder(tmp_path)
    for path, expected in ((foreign, "without unetkit's metadata"), (resizing, "size_policy resize"),
                           (broken, "not a readable ONNX model")):
        assert main(["predict", "--model", str(path), "--input", str(images), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"unetkit: error: {path}") and expected in err and "\n" not in err
    assert main(["predict", "--model", str(onnx_path), "--input", str(images), "--out", str(tmp_path / "o"),
                 "--precision", "bf16"]) == 2
    assert "bf16" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
