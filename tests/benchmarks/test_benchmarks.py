"""The benchmarks still run against the current API (tiny sizes; their figures come from make bench)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from unetkit.data.synthetic import generate_synthetic

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_throughput_measures_both_sides(tmp_path: Path) -> None:
    data = generate_synthetic(tmp_path / "d", 10, size=101, seed=1)
    seen, pipeline, ceiling = load("train_throughput").measure(data, batch_size=4, max_images=8)
    assert seen == 8 and pipeline > 0 and ceiling > 0


def test_quality_links_a_labelled_subset(tmp_path: Path) -> None:
    from unetkit.data.dataset import find_pairs

    data = generate_synthetic(tmp_path / "d", 6, size=16, seed=1)
    pairs = find_pairs(data)
    subset = load("quality").link_subset(pairs, [1, 4], tmp_path / "subset")
    assert [p.stem for p in find_pairs(subset)] == ["syn_00001", "syn_00004"]


def test_inference_benchmark_streams_a_large_tiff_through_the_cli(tiny_model_file: Path, tmp_path: Path) -> None:
    bench = load("inference")
    assert bench.mosaic(250).shape == (250, 250, 1)
    peak_mb, seconds = bench.huge_peak_rss(tiny_model_file, 700, tmp_path)  # checks the tiled (700, 700) output
    assert peak_mb > 0 and seconds > 0
    from unetkit.export.model_file import load_model

    seconds, prob = bench.time_unetkit(load_model(tiny_model_file), bench.mosaic(300))
    assert prob.shape == (300, 300) and seconds > 0


def test_gpu_throughput_measures_both_augmentation_pipelines() -> None:
    import torch

    bench = load("gpu_throughput")
    cpu, device = bench.augment_rates(bench.crops(8, 32), torch.device("cpu"), batch_size=4, steps=2, warmup=1)
    assert cpu > 0 and device > 0
