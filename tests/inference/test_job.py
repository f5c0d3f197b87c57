from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from tests.conftest import write_gray_png
from unetkit import evaluate, predict, read_rle_csv, rle_decode
from unetkit.config import EvaluateConfig, PredictConfig
from unetkit.data.io import read_array
from unetkit.data.preprocess import Preprocess, identity_preprocess
from unetkit.data.regions import open_rows
from unetkit.data.synthetic import generate_synthetic
from unetkit.errors import UserError
from unetkit.export.model_file import save_model
from unetkit.inference import engine as engine_module
from unetkit.inference import job as job_module
from unetkit.inference.predictor import Predictor
from unetkit.models import UNet
from unetkit.visualize import PALETTE

RNG = np.random.default_rng(0)


def _image(height: int, width: int) -> np.ndarray:
    return RNG.integers(0, 255, (height, width), dtype=np.uint8)


def _mixed_folder(root: Path) -> Path:
    folder = root / "in"
    write_gray_png(folder / "a.png", _image(40, 50))
    write_gray_png(folder / "b.png", _image(40, 50))
    write_gray_png(folder / "c.png", _image(300, 170))  # larger than the tile: tiled in memory
    np.save(folder / "d.npy", _image(200, 150))  # above stream_pixels: streamed by rows
    tifffile.imwrite(folder / "e.tif", _image(130, 90), tile=(32, 32), compression="zlib")
    return folder


def _config(model: Path, input_path: Path, out: Path, **fields: object) -> PredictConfig:
    return PredictConfig(model_path=str(model), input_path=str(input_path), out_dir=str(out), device="cpu", tile=64,
                         **fields)


def test_mixed_sizes_whole_tiled_and_streamed(tiny_model_file: Path, tmp_path: Path) -> None:
    folder = _mixed_folder(tmp_path)
    result = predict(_config(tiny_model_file, folder, tmp_path / "out", stream_pixels=10_000, probabilities=True))
    assert (result.n_images, result.n_streamed) == (5, 2)
    out = tmp_path / "out"
    for stem, shape in [("a", (40, 50)), ("b", (40, 50)), ("c", (300, 170))]:
        assert read_array(out / f"{stem}.png").shape == (*shape, 1)
        assert tifffile.imread(out / f"{stem}_prob.tif").shape == (1, *shape)
    for stem, shape in [("d", (200, 150)), ("e", (130, 90))]:
        with tifffile.TiffFile(out / f"{stem}.tif") as tif:
            assert tif.pages[0].is_tiled and tif.pages[0].shape == shape
        assert tifffile.imread(out / f"{stem}_prob.tif").shape == shape
    # streaming changes how rows travel, not the result: the same image predicted in memory agrees
    in_memory = predict(_config(tiny_model_file, folder / "d.npy", tmp_path / "mem", probabilities=True))
    assert in_memory.n_streamed == 0
    assert np.array_equal(tifffile.imread(out / "d.tif"), read_array(tmp_path / "mem" / "d.png")[:, :, 0])
    assert np.array_equal(tifffile.imread(out / "d_prob.tif"), tifffile.imread(tmp_path / "mem" / "d_prob.tif")[0])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_rle_csv_decodes_to_the_masks(tiny_model_file: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    for i, shape in enumerate([(101, 101), (101, 101), (77, 130)]):
        write_gray_png(folder / f"img{i}.png", _image(*shape))
    predict(_config(tiny_model_file, folder, tmp_path / "out", rle=str(tmp_path / "sub.csv"), threshold=0.45))
    rows = read_rle_csv(tmp_path / "sub.csv")
    assert sorted(rows) == ["img0", "img1", "img2"]
    for stem, rle in rows.items():
        mask = read_array(tmp_path / "out" / f"{stem}.png")[:, :, 0] > 0
        assert mask.any()  # the threshold makes the random model predict some foreground
        assert np.array_equal(rle_decode(rle, mask.shape), mask)


def test_multiclass_masks_are_palette_pngs_of_the_training_colours(tmp_path: Path) -> None:
    classes = [{"name": "bg", "color": [0, 0, 0]}, {"name": "rock", "color": [200, 10, 10]},
               {"name": "salt", "color": [10, 200, 10]}]
    model = tmp_path / "m.safetensors"
    save_model(model, UNet(num_classes=3, start_neurons=4, depth=2), identity_preprocess(1),
               training={"classes": classes})
    write_gray_png(tmp_path / "in" / "x.png", _image(90, 70))
    predict(_config(model, tmp_path / "in", tmp_path / "out", rle=str(tmp_path / "sub.csv")))
    with Image.open(tmp_path / "out" / "x.png") as png:
        assert png.mode == "P"
        assert png.getpalette()[:9] == [0, 0, 0, 200, 10, 10, 10, 200, 10]
    indices = read_array(tmp_path / "out" / "x.png", palette_indices=True)[:, :, 0]
    assert indices.max() <= 2
    rows = read_rle_csv(tmp_path / "sub.csv")
    assert sorted(rows) == ["x_rock", "x_salt"]
    assert np.array_equal(rle_decode(rows["x_salt"], indices.shape), indices == 2)


def test_classes_beyond_the_palette_take_its_last_colour(tmp_path: Path) -> None:
    model = tmp_path / "m.safetensors"  # 11 classes, no classes.yaml: the colours overlays use (class_colours)
    save_model(model, UNet(num_classes=11, start_neurons=4, depth=2), identity_preprocess(1))
    write_gray_png(tmp_path / "in" / "x.png", _image(40, 40))
    predict(_config(model, tmp_path / "in", tmp_path / "out"))
    with Image.open(tmp_path / "out" / "x.png") as png:
        colours = np.array(png.getpalette()[:33]).reshape(11, 3).tolist()
    assert colours == PALETTE.tolist() + [PALETTE[-1].tolist()] * 2


def test_a_killed_folder_is_finished_by_running_it_again(tiny_model_file: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "in"
    for i in range(5):
        write_gray_png(folder / f"img{i}.png", _image(60, 60))
    config = _config(tiny_model_file, folder, tmp_path / "out", batch_size=1, overlay=True)
    real_read, calls = job_module.read_array, []

    def killed_on_the_fourth(path: Path, **kwargs: object) -> np.ndarray:
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_read(path, **kwargs)

    monkeypatch.setattr(job_module, "read_array", killed_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        predict(config)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["img0.png", "img0_overlay.png", "img1.png", "img1_overlay.png",
                                                     "predict_args.json"]  # complete files only
    assert json.loads((out / "predict_args.json").read_text())["status"] == "running"
    monkeypatch.setattr(job_module, "read_array", real_read)
    result = predict(config)
    assert (result.n_images, result.n_skipped) == (5, 2)
    clean = predict(_config(tiny_model_file, folder, tmp_path / "clean", batch_size=1, overlay=True))
    for i in range(5):
        assert np.array_equal(read_array(out / f"img{i}.png"), read_array(clean.out_dir / f"img{i}.png"))
    # a changed option is a different job: everything is predicted again
    assert predict(_config(tiny_model_file, folder, tmp_path / "out", batch_size=1, threshold=0.3)).n_skipped == 0


def test_a_killed_stream_leaves_no_output(tiny_model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.save(tmp_path / "big.npy", _image(400, 300))
    real_network, calls = Predictor.network, []

    def killed(self: Predictor, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_network(self, x, size)

    monkeypatch.setattr(Predictor, "network", killed)
    config = _config(tiny_model_file, tmp_path / "big.npy", tmp_path / "out", stream_pixels=1, batch_size=4,
                     probabilities=True)
    with pytest.raises(KeyboardInterrupt):
        predict(config)
    assert not (tmp_path / "out").exists()  # nothing was finished: no folder holding only predict_args.json
    monkeypatch.setattr(Predictor, "network", real_network)
    assert predict(config).n_skipped == 0
    assert tifffile.imread(tmp_path / "out" / "big.tif").shape == (400, 300)


def test_streamed_images_refuse_rle_and_resize_models(tiny_model_file: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "big.npy", _image(100, 100))
    with pytest.raises(UserError, match=r"big.npy: 100x100 is streamed, too large for --rle"):
        predict(_config(tiny_model_file, tmp_path / "big.npy", tmp_path / "o", stream_pixels=10, rle="x.csv"))
    resize_model = tmp_path / "r.safetensors"
    save_model(resize_model, UNet(start_neurons=4, depth=2), Preprocess((0.0,), (1.0,), "resize", 32))
    with pytest.raises(UserError, match="big.npy: 100x100 is too large for this model, which resizes every image"):
        predict(_config(resize_model, tmp_path / "big.npy", tmp_path / "o", stream_pixels=10))
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_evaluate_scores_large_images_as_predict_writes_them(tiny_model_file: Path, tmp_path: Path) -> None:
    data = generate_synthetic(tmp_path / "data", 3, size=150, seed=2)
    options = {"device": "cpu", "tile": 64, "tta": "flips", "threshold": 0.45}
    scores = evaluate(EvaluateConfig(model_path=str(tiny_model_file), data_dir=str(data), **options)).metrics
    predict(PredictConfig(model_path=str(tiny_model_file), input_path=str(data / "images"),
                          out_dir=str(tmp_path / "pred"), **options))
    inter = union = 0
    for mask_file in sorted((data / "masks").iterdir()):
        truth = read_array(mask_file)[:, :, 0] > 0
        pred = read_array(tmp_path / "pred" / mask_file.name)[:, :, 0] > 0
        inter, union = inter + (truth & pred).sum(), union + (truth | pred).sum()
    assert scores["iou"] == pytest.approx(inter / union, abs=1e-6)


def test_a_record_from_before_the_format_tag_still_marks_the_folder(tiny_model_file: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    for name in ("a", "b"):
        write_gray_png(folder / f"{name}.png", _image(20, 20))
    config = _config(tiny_model_file, folder, tmp_path / "out")
    predict(config)
    record_path = tmp_path / "out" / job_module.RECORD_NAME
    record = json.loads(record_path.read_text())
    assert record["format"] == job_module.RECORD_FORMAT and len(record["model_sha256"]) == 64
    record_path.write_text(json.dumps({k: v for k, v in record.items() if k != "format"}))  # as older code wrote it
    again = predict(config)
    assert (again.n_images, again.n_skipped) == (2, 2)
    assert json.loads(record_path.read_text())["format"] == job_module.RECORD_FORMAT


def test_engine_probabilities_refuse_nan_as_files_do(tiny_model_file: Path) -> None:
    from unetkit.export.model_file import load_model

    predictor = Predictor(load_model(tiny_model_file), device="cpu")
    images = np.zeros((2, 16, 16, 1), np.float32)
    images[1, 3, 4] = np.nan
    with pytest.raises(UserError, match=r"^images: 1 of 512 pixels are NaN or infinite"):
        predictor.probabilities(images)
    assert predictor.probabilities(np.zeros((2, 16, 16, 1), np.float32)).shape == (2, 1, 16, 16)


class _DirectReads:
    """ReadAhead without its thread: each band read when the tile grid asks for it (the plain path)."""

    def __init__(self, read, spans) -> None:  # type: ignore[no-untyped-def]
        self.read = read

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.read

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.mark.parametrize(("classes", "multilabel"), [(1, False), (3, False), (2, True)])
def test_streamed_threads_write_what_the_plain_path_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            classes: int, multilabel: bool) -> None:
    """Rows read ahead and masks decided in the writer's thread: the same files, to the bit, as reading each band
    when asked and deciding each mask on the caller's thread."""
    net = UNet(num_classes=classes, multilabel=multilabel, start_neurons=4, depth=2)
    head = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():  # logits that vary from pixel to pixel (with a narrow std): argmax masks of several classes
        head.weight *= 50
        head.bias.zero_()
    model = tmp_path / "m.safetensors"
    save_model(model, net, Preprocess((0.5,), (0.1,)), threshold=0.5)
    tifffile.imwrite(tmp_path / "big.tif", _image(300, 230), tile=(32, 32), compression="zlib")
    config = _config(model, tmp_path / "big.tif", tmp_path / "out", stream_pixels=1, batch_size=4, probabilities=True)
    with monkeypatch.context() as plain:
        plain.setattr(engine_module, "ReadAhead", _DirectReads)
        with open_rows(tmp_path / "big.tif", 1) as reader:
            predictor = job_module.PredictionJob(config).predictor
            prob = np.concatenate([band for _, band in predictor.stream(reader, 300, 230)], axis=1)  # (K, H, W)
    if classes == 1 or multilabel:  # a threshold at the random model's median: masks of both values
        config = dataclasses.replace(config, threshold=float(np.median(prob)))
        predictor = job_module.PredictionJob(config).predictor
    assert predict(config).n_streamed == 1
    mask = predictor.to_mask(prob, postprocess=False)
    mask = np.moveaxis(mask, 0, -1) * 255 if multilabel else mask * 255 if classes == 1 else mask
    written = tifffile.imread(tmp_path / "out" / "big.tif")
    assert written.shape == mask.shape and len(np.unique(written)) >= 2  # not all one value: a real comparison
    assert np.array_equal(written, mask)
    assert np.array_equal(tifffile.imread(tmp_path / "out" / "big_prob.tif"), np.moveaxis(prob, 0, -1).squeeze(-1)
                          if classes == 1 else np.moveaxis(prob, 0, -1))


def test_the_tile_bar_counts_every_tile_of_a_streamed_image(tiny_model_file: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    bars: list[_Bar] = []
    monkeypatch.setattr(job_module, "progress", lambda **options: bars.append(_Bar(**options)) or bars[-1])
    np.save(tmp_path / "big.npy", _image(200, 150))
    predict(_config(tiny_model_file, tmp_path / "big.npy", tmp_path / "out", stream_pixels=1, batch_size=5))
    tile_bar = next(bar for bar in bars if bar.unit == "tile")
    assert tile_bar.total == 4 * 3  # rows at 0, 48, 96, 136; columns at 0, 48, 86 (tile 64, step 48)
    assert tile_bar.updates == [0, 5, 10, 12] and tile_bar.closed  # batches of 5 tiles, ending at the total


class _Bar:
    """What a progress bar is told."""

    def __init__(self, total: int, unit: str, **_: object) -> None:
        self.total, self.unit, self.updates, self.closed = total, unit, [0], False

    def update(self, n: int = 1) -> None:
        self.updates.append(self.updates[-1] + n)

    def close(self) -> None:
        self.closed = True
