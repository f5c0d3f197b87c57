"""The training plan: choices for known folders, memory fitting, overrides and their errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from tests.conftest import write_gray_png
from unetkit.config import ModelConfig
from unetkit.data.fingerprint import Fingerprint, fingerprint
from unetkit.data.synthetic import generate_synthetic
from unetkit.errors import UserError
from unetkit.models import UNet
from unetkit.training.plan import BYTES_PER_PIXEL_PER_NEURON, Plan, make_plan

GIB = 2**30


def _rgb_folder(root: Path, shapes: list[tuple[int, int]]) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    for i, (h, w) in enumerate(shapes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"i{i}.png")
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4: h // 4 + 60, w // 3: w // 3 + 90] = 255  # 2% of a 512^2 image
        write_gray_png(root / "masks" / f"i{i}.png", mask)
    return root


@pytest.fixture(scope="module")
def gray_101(tmp_path_factory: pytest.TempPathFactory) -> Fingerprint:
    return fingerprint(generate_synthetic(tmp_path_factory.mktemp("p") / "syn", 12, size=101, seed=0))


def test_101_gray_trains_whole_at_depth_4(gray_101: Fingerprint) -> None:
    plan = make_plan(gray_101, "cpu", memory_bytes=8 * GIB)
    assert (plan.mode, plan.depth, plan.patch_size, plan.batch_size) == ("whole", 4, 112, 32)
    assert plan.foreground_share == 0.0 and plan.margin == 0 and plan.predict_tile == 256
    assert plan.normalization == "zscore" and plan.mean == gray_101.mean and plan.clip_low is None
    assert set(plan.why) >= {"mode", "patch_size", "batch_size", "depth", "normalization", "predict_tile"}
    assert "101x101" in plan.why["mode"]


def test_tiny_images_get_fewer_levels(tmp_path: Path) -> None:
    """40 px images: 4 pooling steps leave 2.5 px, 3 leave 5 (>= 4)."""
    plan = make_plan(fingerprint(generate_synthetic(tmp_path / "s", 4, size=40, seed=1)), "cpu", memory_bytes=GIB)
    assert (plan.mode, plan.depth, plan.patch_size) == ("whole", 3, 40)
    assert "2.5 px" in plan.why["depth"]


def test_512_rgb_trains_on_256_patches(tmp_path: Path) -> None:
    fp = fingerprint(_rgb_folder(tmp_path / "rgb", [(512, 512)] * 3))
    plan = make_plan(fp, "cpu", memory_bytes=8 * GIB)
    assert fp.channels == 3 and len(plan.mean) == 3
    assert (plan.mode, plan.patch_size, plan.predict_tile, plan.depth) == ("patch", 256, 256, 4)
    assert 2 <= plan.batch_size <= 32 and plan.margin == 64 and plan.foreground_share == pytest.approx(0.33)


def test_mixed_sizes_train_on_patches(tmp_path: Path) -> None:
    fp = fingerprint(_rgb_folder(tmp_path / "mixed", [(200, 300), (240, 320), (180, 180)]))
    plan = make_plan(fp, "cpu", memory_bytes=8 * GIB)
    assert plan.mode == "patch" and "sizes differ" in plan.why["mode"]
    assert fp.size_median == (200, 300)
    assert plan.patch_size == 208  # the median shorter side 200 rounded up to a multiple of 16, not 256


def test_batch_size_follows_memory(gray_101: Fingerprint) -> None:
    """At 1600 B/px a 112^2 image takes 20 MB: 0.2 GiB of budget holds 10; a 256 px patch fitting no two shrinks."""
    plan = make_plan(gray_101, "cpu", memory_bytes=int(0.4 * GIB))  # cpu share 0.5 of it
    assert plan.batch_size == int(0.2 * GIB // (1600 * 112 * 112))
    big = dataclasses.replace(gray_101, size_min=(4000, 4000), size_median=(4000, 4000), size_max=(4000, 4000))
    small = make_plan(big, "cpu", memory_bytes=300 * 2**20)  # 150 MiB: two 208^2 patches, not two 224^2
    assert (small.mode, small.patch_size, small.batch_size) == ("patch", 208, 2)


def test_10000_tiff_trains_on_patches_and_predicts_in_tiles(tmp_path: Path) -> None:
    """A real 10000 x 10000 TIFF with thin lines: patches, predict tile = patch, the thin hint in the why."""
    side = 10000
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    tifffile.imwrite(tmp_path / "images" / "s.tif", np.broadcast_to((np.arange(side) % 200).astype(np.uint8), (side, side)),
                     tile=(512, 512), compression="zlib")
    mask = np.zeros((side, side), np.uint8)
    mask[::100, :] = 255
    mask[:, ::100] = 255
    tifffile.imwrite(tmp_path / "masks" / "s.tif", mask, tile=(512, 512), compression="zlib")
    del mask
    fp = fingerprint(tmp_path)
    plan = make_plan(fp, "cpu", memory_bytes=8 * GIB)
    assert fp.size_max == (side, side) and fp.foreground_width == 1.0
    assert (plan.mode, plan.patch_size, plan.predict_tile, plan.depth) == ("patch", 512, 512, 4)
    assert "thin structures" in plan.why["patch_size"] and "exceed" in plan.why["mode"]
    assert plan.foreground_share == pytest.approx(0.33)


def test_rare_foreground_gets_half_the_patches(gray_101: Fingerprint) -> None:
    rare = dataclasses.replace(gray_101, same_size=False, class_share=(0.995, 0.005))
    plan = make_plan(rare, "cpu", memory_bytes=GIB)
    assert plan.mode == "patch" and plan.foreground_share == 0.5 and "0.50%" in plan.why["foreground_share"]


def test_ct_like_floats_are_clipped(gray_101: Fingerprint) -> None:
    ct = dataclasses.replace(gray_101, dtypes=("float32",), mean=(-300.0,), std=(400.0,),
                             percentile_00_5=(-1024.0,), percentile_99_5=(1500.0,))
    plan = make_plan(ct, "cpu", memory_bytes=GIB)
    assert (plan.normalization, plan.clip_low, plan.clip_high) == ("clip_zscore", (-1024.0,), (1500.0,))


def test_overrides_are_kept_and_followed(gray_101: Fingerprint) -> None:
    plan = make_plan(gray_101, "cpu", {"mode": "patch", "patch_size": 64, "depth": 3}, memory_bytes=GIB)
    assert (plan.mode, plan.patch_size, plan.depth) == ("patch", 64, 3)
    assert plan.why["patch_size"] == "set by you (patch_size=64)"
    assert plan.margin == 20  # followed from the set patch size (warp_margin(64))
    assert make_plan(gray_101, "cpu", {"batch_size": 4}, memory_bytes=GIB).batch_size == 4
    crowded = make_plan(gray_101, "cpu", {"batch_size": 32}, memory_bytes=100 * 2**20)
    assert "over the budget" in crowded.why["batch_size"]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"patchsize": 128}, "plan field 'patchsize' is unknown"),
    ({"why": {}}, "plan field 'why' is unknown or not settable"),
    ({"patch_size": 100}, "plan field 'patch_size': 100 is not a positive multiple of 16 .*--patch-size.*try 96 or "
                          "112"),
    ({"batch_size": "many"}, "plan field 'batch_size': 'many' is not a valid value"),
    ({"mode": "tiles"}, "plan field 'mode': 'tiles' is not whole or patch"),
    ({"foreground_share": 1.5}, "plan field 'foreground_share'"),
])
def test_bad_overrides_are_one_line(gray_101: Fingerprint, overrides: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        make_plan(gray_101, "cpu", overrides, memory_bytes=GIB)
    assert "\n" not in str(caught.value)


def test_plan_round_trips_through_json(gray_101: Fingerprint) -> None:
    plan = make_plan(gray_101, "cpu", memory_bytes=GIB)
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan and again.why == plan.why and again.fingerprint == gray_101.to_dict()


def test_device_memory_is_read(gray_101: Fingerprint) -> None:
    plan = make_plan(gray_101, "cpu")
    assert plan.memory_bytes > 0 and "free on cpu" in plan.why["memory_bytes"]


def test_memory_constant_covers_saved_activations() -> None:
    """The constant (peak RSS of a step) exceeds the tensors the seed saves for backward, per pixel."""
    net = UNet(ModelConfig(start_neurons=4)).train()
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(torch.randn(2, 1, 64, 64)).sum().backward()
    per_pixel = sum(saved.values()) / (2 * 64 * 64)
    assert 0.5 * BYTES_PER_PIXEL_PER_NEURON * 4 < per_pixel < BYTES_PER_PIXEL_PER_NEURON * 4


def _shaped(fp: Fingerprint, **changes: object) -> Fingerprint:
    return dataclasses.replace(fp, **changes)


def test_data_like_tgs_is_watched_by_its_map_and_flipped_left_right_only(gray_101: Fingerprint) -> None:
    """39% empty masks, as TGS has: the TGS mAP picks the epoch; horizontal flips only."""
    plan = make_plan(_shaped(gray_101, foreground_image_share=0.61), "cpu", memory_bytes=GIB)
    assert (plan.monitor, plan.augment) == ("val_map", "seed")
    assert "39% of the masks are empty" in plan.why["monitor"]


def test_data_without_an_up_gets_all_eight_symmetries_and_dice(tmp_path: Path) -> None:
    """Every 512^2 mask holds foreground and top and bottom look alike: Dice, and the d4 preset."""
    fp = fingerprint(_rgb_folder(tmp_path / "rgb", [(512, 512)] * 3))
    plan = make_plan(_shaped(fp, up_down_difference=0.02), "cpu", memory_bytes=GIB)
    assert (plan.mode, plan.monitor, plan.augment) == ("patch", "val_dice", "d4")
    assert "0.02 < 0.1" in plan.why["augment"]


def test_classes_with_an_up_are_watched_by_mean_iou_and_not_turned(gray_101: Fingerprint) -> None:
    """Eleven classes whose top and bottom halves differ by 0.86 (street scenes): mean IoU, horizontal flips."""
    street = _shaped(gray_101, num_classes=11, up_down_difference=0.86, foreground_image_share=1.0)
    plan = make_plan(street, "cpu", memory_bytes=GIB)
    assert (plan.monitor, plan.augment) == ("val_iou", "seed")
    assert "0.86 >= 0.1" in plan.why["augment"]


def test_class_index_masks_get_tempered_weights_and_binary_masks_none(gray_101: Fingerprint) -> None:
    shares = (0.3, 0.25, 0.004, 0.2, 0.05, 0.1, 0.01, 0.01, 0.066, 0.003, 0.007)  # street scenes' kind of spread
    street = _shaped(gray_101, num_classes=11, class_share=shares, foreground_image_share=1.0)
    plan = make_plan(street, "cpu", memory_bytes=GIB)
    assert plan.balance_classes == "tempered"
    assert "the rarest 0.30% of the pixels and the commonest 30.0%" in plan.why["balance_classes"]
    assert make_plan(gray_101, "cpu", memory_bytes=GIB).balance_classes == "none"  # binary
    kept = make_plan(street, "cpu", memory_bytes=GIB, config_choices={"balance_classes": "inverse"})
    assert kept.balance_classes == "inverse"


def test_whole_images_that_are_not_square_are_flipped_not_turned(gray_101: Fingerprint) -> None:
    wide = _shaped(gray_101, size_min=(100, 160), size_median=(100, 160), size_max=(100, 160),
                   foreground_image_share=1.0)
    plan = make_plan(wide, "cpu", memory_bytes=8 * GIB)
    assert (plan.mode, plan.augment) == ("whole", "flips")


def test_the_configs_own_monitor_and_augment_are_kept(gray_101: Fingerprint) -> None:
    plan = make_plan(gray_101, "cpu", memory_bytes=GIB, config_choices={"monitor": "val_loss", "augment": "auto"})
    assert plan.monitor == "val_loss" and "its recipe's or yours" in plan.why["monitor"]
    assert "yours" not in plan.why["augment"]  # auto: the plan's own choice, with its reason


def test_the_default_recipe_trains_with_the_plans_monitor_and_symmetries(tmp_path: Path) -> None:
    """`best` leaves three choices to the plan: config.yaml keeps what was asked ("auto"), plan.json and the
    model file's record what was chosen and why; nothing copies the plan into the config. The synthetic set's
    masks are 42% empty, like TGS's."""
    import yaml

    from unetkit.api import train
    from unetkit.export.model_file import load_model

    data = generate_synthetic(tmp_path / "syn", 12, size=40, seed=2)
    train(data, tmp_path / "run", epochs=1, runtime={"device": "cpu"})
    asked = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert asked["recipe"] == "best-cpu"
    assert (asked["monitor"], asked["data"]["augment"], asked["loss"]["balance_classes"]) == ("auto", "auto", "auto")
    assert (plan["monitor"], plan["augment"], plan["balance_classes"]) == ("val_map", "seed", "none")
    assert plan["why"]["monitor"].startswith("42% of the masks are empty")
    assert load_model(tmp_path / "run" / "model.safetensors").training["plan"] == plan


def test_the_width_reason_given_is_the_one_plan_json_records(gray_101: Fingerprint) -> None:
    plan = make_plan(gray_101, "cpu", memory_bytes=8 * GIB, model=ModelConfig(start_neurons=16), width_why="classes")
    assert plan.start_neurons == 16 and plan.to_dict()["why"]["start_neurons"] == "classes"
    assert make_plan(gray_101, "cpu", memory_bytes=8 * GIB).why["start_neurons"] == "the model's start_neurons (16)"
