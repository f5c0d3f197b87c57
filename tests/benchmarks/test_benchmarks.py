"""The benchmarks still run against the current API (tiny sizes; their figures come from make bench)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from unetkit.data.synthetic import generate_synthetic

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:  # quality.py imports its siblings, as `python benchmarks/quality.py` finds them
    sys.path.insert(0, str(BENCHMARKS))


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there, as `import` would have put it
    spec.loader.exec_module(module)
    return module


def test_train_throughput_measures_both_sides(tmp_path: Path) -> None:
    data = generate_synthetic(tmp_path / "d", 10, size=101, seed=1)
    seen, pipeline, ceiling = load("train_throughput").measure(data, batch_size=4, max_images=8)
    assert seen == 8 and pipeline > 0 and ceiling > 0


def test_cpu_precision_times_both_precisions_on_the_same_step() -> None:
    figures = load("cpu_precision").measure({"start_neurons": 4, "depth": 2}, batch_size=2, size=32, steps=1, rounds=1)
    assert set(figures) == {"fp32", "bf16", "ratio"}
    assert figures["ratio"] == pytest.approx(figures["bf16"] / figures["fp32"]) and figures["fp32"] > 0


def test_quality_links_a_labelled_subset(tmp_path: Path) -> None:
    from unetkit.data.pairing import find_pairs

    data = generate_synthetic(tmp_path / "d", 6, size=16, seed=1)
    pairs = find_pairs(data)
    subset = load("quality").link_subset(pairs, [1, 4], tmp_path / "subset")
    assert [p.stem for p in find_pairs(subset)] == ["syn_00001", "syn_00004"]


@pytest.mark.slow
def test_quality_table_runs_every_recipe_on_two_folds_and_ends_with_the_budget_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--quick", "--recipes", "fast,best", "--out", str(tmp_path / "q")]
    means = load("quality").main(args)
    lines = capsys.readouterr().out.strip().splitlines()
    assert set(means[0.01]) == {"fast", "best"}
    assert all(0.0 <= m <= 1.0 for m in means[0.01].values())
    for recipe in ("fast", "best"):  # one run per held-out fold (one seed in --quick)
        assert sorted(p.name for p in (tmp_path / "q" / "0.01min" / recipe).iterdir()) == ["fold0_seed0", "fold1_seed0"]
    best, fast = means[0.01]["best"], means[0.01]["fast"]
    assert lines[-1] == f"quality: budget=0.01cpu best_map={best:.4f} fast_map={fast:.4f} gain={best - fast:.4f}"
    assert any(line.startswith("| best | ") and " ± " in line for line in lines)  # the table's row
    assert (tmp_path / "q" / "table.md").read_text().count("| best | ") == 1
    again = load("quality").main(args)  # finished runs are reused
    assert again == means
    trained = tmp_path / "q" / "0.01min" / "best" / "fold0_seed0" / "trained.json"
    stamp = trained.stat().st_mtime_ns
    load("quality").main(args + ["--tta", "hflip"])  # finished runs are scored again, not trained again
    assert trained.stat().st_mtime_ns == stamp
    flipped = json.loads((trained.parent / "score-hflip.json").read_text())
    assert flipped["tta"] == "hflip" and flipped["epochs"] == json.loads(trained.read_text())["epochs"]
    partial = load("quality").main(args + ["--recipes", "fast,best,seed", "--finished-only"])  # seed: never run
    assert partial == {0.01: means[0.01]} and not (tmp_path / "q" / "0.01min" / "seed").exists()
    assert "seed 0.01 min: not finished: fold0_seed0, fold1_seed0" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="fold0_seed0 holds a run of other images"):  # fold 0 holds out another third
        load("quality").main(args + ["--folds", "3"])


def test_quality_refuses_to_reuse_a_run_of_another_config(tmp_path: Path) -> None:
    check = load("quality").check_same_run
    key = {"config": {"seed": 0, "optim": {"lr": 1e-3, "ema_decay": 0.998}}, "train_images": "a", "held_out_images": "b"}
    check({"epochs": 3}, key, tmp_path)  # written before keys were kept: trusted
    check({**key, "config": {"optim": {"lr": 1e-3}}}, key, tmp_path)  # a field added since is no difference
    with pytest.raises(SystemExit, match=r"another config \(optim.ema_decay differ\)"):
        check({**key, "config": {"seed": 0, "optim": {"lr": 1e-3, "ema_decay": 0.99}}}, key, tmp_path)
    with pytest.raises(SystemExit, match="other images"):
        check({**key, "held_out_images": "c"}, key, tmp_path)


def test_every_quality_ablation_resolves_to_a_config_that_differs_from_its_recipe() -> None:
    from unetkit.training.recipes import resolve_train_config

    quality = load("quality")
    for name, (base, _) in quality.ABLATIONS.items():
        changed = resolve_train_config(quality.recipe_layer(name))
        assert changed.recipe == base and changed != resolve_train_config({"recipe": base}), name
    assert len(quality.ABLATIONS) == 27


def test_quality_refuses_an_unknown_recipe_before_training(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown recipe 'nope'"):
        load("quality").main(["--quick", "--recipes", "fast,nope", "--out", str(tmp_path / "q")])
    with pytest.raises(SystemExit, match="--seed 2 is not one of 0..1"):
        load("quality").main(["--quick", "--seeds", "2", "--seed", "2", "--out", str(tmp_path / "q")])


@pytest.mark.slow
def test_quality_scores_unetkit_and_the_smp_peer_alike_on_a_drive_like_set(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The non-TGS path: F1, AUC and HD95 inside fov/ for the default and the peer, through evaluate's scorer."""
    args = ["--quick", "--data", "drive-train", "--recipes", "default,smp", "--out", str(tmp_path / "q")]
    means = load("quality").main(args)
    out = capsys.readouterr().out
    assert set(means[0.01]) == {"default", "smp"} and all(0.0 <= m <= 1.0 for m in means[0.01].values())
    for recipe in ("default", "smp"):  # drive-train holds out fold 0 of 5 only
        run = tmp_path / "q" / "0.01min" / recipe / "fold0_seed0"
        score = json.loads((run / "score.json").read_text())
        assert set(score) >= {"f1", "auc", "hd95", "epochs", "minutes"} and score["n_test"] == 5
        assert score["f1"] == pytest.approx(means[0.01][recipe]) and 0.0 <= score["auc"] <= 1.0
        assert (run / "held_out-none.csv").read_text().startswith("stem,iou,dice")  # evaluate's per-image CSV
    assert (tmp_path / "q" / "0.01min" / "smp" / "fold0_seed0" / "peer.safetensors").is_file()
    table = (tmp_path / "q" / "table.md").read_text()
    assert "| recipe | f1 | auc | hd95 | epochs | minutes | n |" in table and table.count("| smp | ") == 1
    default, peer = means[0.01]["default"], means[0.01]["smp"]
    assert out.strip().splitlines()[-1] == (f"quality: data=drive-train budget=0.01cpu f1 default={default:.4f} "
                                            f"smp={peer:.4f} lead={default - peer:.4f}")
    assert load("quality").main(args) == means  # finished runs, the peer's too, are reused


def test_the_peer_is_smps_resnet18_unet_under_the_torchvision_stand_in() -> None:
    import torch

    net = load("peer_smp").build_net(load("peer_smp").PeerConfig(), 11)
    assert sum(p.numel() for p in net.parameters()) == 14_329_659  # smp.Unet("resnet18", classes=11)
    assert net(torch.zeros(1, 3, 64, 96)).shape == (1, 11, 64, 96)
    assert not any(name == "torchvision" or name.startswith("torchvision.") for name in sys.modules)


def test_quality_sets_split_and_score_as_their_readmes_say(tmp_path: Path) -> None:
    from unetkit.data.io import write_png
    from unetkit.data.pairing import find_pairs

    sets = load("quality_sets")
    # ISBI: the membranes' IoU from the cells' IoU and the accuracy: TP 30, FP 10, FN 10, TN 50 of 100
    assert sets.membrane_iou(30 / 50, 80 / 100) == pytest.approx(50 / 70)
    figures = sets.SETS["isbi-train"].figures({"iou": 0.6, "pixel_accuracy": 0.8})
    assert figures == pytest.approx({"mean_iou": (0.6 + 50 / 70) / 2, "membrane_iou": 50 / 70, "cell_iou": 0.6})
    camvid = sets.SETS["camvid-train"]
    assert camvid.figures({"iou": 0.5, "iou_per_class": [0.1] * 11})["iou_bicyclist"] == 0.1
    assert camvid.train_layer() == {"model": {"num_classes": 11}, "data": {"ignore_index": 11}}
    # CamVid: fold 0 = the first fifth of each sequence's frames
    for name in [f"A_{i:02d}" for i in range(10)] + [f"B_{i:02d}" for i in range(5)]:
        for sub in ("images", "masks"):
            write_png(tmp_path / "c" / sub / f"{name}.png", np.zeros((4, 4), np.uint8))
    pairs = find_pairs(tmp_path / "c")
    chosen, folds = sets.held_out_folds(camvid, pairs, 5)
    assert len(chosen) == 15 and [pairs[i].stem for i in folds[0]] == ["A_00", "A_01", "B_00"]
    assert sets.find_set("drive-train")[0].fov and sets.find_set(str(tmp_path / "c"))[0].name == "custom"


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


@pytest.mark.slow
def test_large_images_benchmark_measures_memory_throughput_and_quality(tmp_path: Path) -> None:
    """Tiny sizes: a 700^2 pair trained by the CLI in a child process, 2 scenes of 300^2 for throughput, and
    patch against whole training for a moment each on 4 scenes of 128^2."""
    bench = load("large_images")
    assert bench.peak_memory(tmp_path, side=700, patch=64, patches=8) > 100  # MB: at least the interpreter
    assert (tmp_path / "huge_run" / "plan.json").is_file()
    pipeline, ceiling = bench.throughput(tmp_path, images=2, side=300, patch=32, batch_size=2, steps=2)
    assert pipeline > 0 and ceiling > 0
    patch_iou, whole_iou = bench.quality(tmp_path, images=4, side=128, patch=64, minutes=0.01)
    assert 0.0 <= patch_iou <= 1.0 and 0.0 <= whole_iou <= 1.0
    assert json.loads((tmp_path / "quality_patch" / "plan.json").read_text())["mode"] == "patch"
    assert json.loads((tmp_path / "quality_whole" / "plan.json").read_text())["mode"] == "whole"


def test_prediction_precision_compares_fp32_and_bf16_masks_and_figures(tiny_model_file: Path, tmp_path: Path) -> None:
    module = load("prediction_precision")
    data = generate_synthetic(tmp_path / "d", 3, size=40, seed=2)
    result = module.compare(module.SETS["isbi-train"], str(tiny_model_file), data, tmp_path)
    assert result["n"] == 3 and result["pixels"] == 3 * 40 * 40
    assert 0.0 <= result["flipped"] <= 1.0 and 0.0 <= result["max_abs"] <= 1.0
    assert [row[0] for row in result["rows"]] == ["mean_iou", "membrane_iou", "cell_iou"]


def test_tile_overlap_scores_each_setting(tiny_model_file: Path, tmp_path: Path) -> None:
    module = load("tile_overlap")
    data = generate_synthetic(tmp_path / "d", 2, size=40, seed=2)
    images: list[np.ndarray] = []
    figures = module.quality(module.SETS["isbi-train"], str(tiny_model_file), data, (16, 0.25), tmp_path, images)
    assert len(images) == 2 and set(figures) == {"mean_iou", "membrane_iou", "cell_iou"}
