"""evaluate: chosen figures, a field of view, bootstrap intervals in the summary line and the CSV."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from unetkit.api import evaluate, predict
from unetkit.boundary import boundary_figures
from unetkit.cli.main import main
from unetkit.config import EvaluateConfig, PredictConfig
from unetkit.data.io import read_array
from unetkit.data.preprocess import identity_preprocess
from unetkit.data.synthetic import generate_synthetic
from unetkit.export.model_file import save_model
from unetkit.models import UNet

NAMES = "iou,dice,tgs_map,hd95,assd,nsd@1,auc"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(path, UNet(start_neurons=4, depth=2), identity_preprocess(1), threshold=0.5)
    return path


@pytest.fixture(scope="module")
def fov_sets(tmp_path_factory: pytest.TempPathFactory, model_file: Path) -> tuple[Path, Path, Path]:
    """(clean, wrong_outside, fov): masks equal to the model's own predictions; in `wrong_outside` every
    pixel outside the region (a centred disc) is flipped; `fov` holds the region masks."""
    tmp_path = tmp_path_factory.mktemp("fov")
    synthetic_dir = generate_synthetic(tmp_path / "syn", 12, size=40, seed=3)
    predict(PredictConfig(model_path=str(model_file), input_path=str(synthetic_dir / "images"),
                          out_dir=str(tmp_path / "pred"), device="cpu"))
    clean, wrong, fov = tmp_path / "clean", tmp_path / "wrong", tmp_path / "fov"
    for folder in (clean, wrong):
        shutil.copytree(synthetic_dir / "images", folder / "images")
        (folder / "masks").mkdir()
    fov.mkdir()
    rows, cols = np.mgrid[:40, :40]
    region = (rows - 20) ** 2 + (cols - 20) ** 2 <= 14**2
    for path in sorted((tmp_path / "pred").glob("*.png")):
        mask = read_array(path)[..., 0] > 0
        Image.fromarray((mask * 255).astype(np.uint8)).save(clean / "masks" / path.name)
        flipped = np.where(region, mask, ~mask)
        Image.fromarray((flipped * 255).astype(np.uint8)).save(wrong / "masks" / path.name)
        Image.fromarray((region * 255).astype(np.uint8)).save(fov / path.name)
    return clean, wrong, fov


def _evaluate(model: Path, data: Path, csv_name: str, fov: Path | None = None) -> dict:
    return evaluate(EvaluateConfig(model_path=str(model), data_dir=str(data), csv_path=csv_name, device="cpu",
                                   metrics=NAMES, fov_dir=str(fov or ""), resamples=200)).metrics


def test_everything_wrong_outside_the_region_moves_no_figure(fov_sets: tuple[Path, Path, Path],
                                                             model_file: Path) -> None:
    clean, wrong, fov = fov_sets
    inside_clean = _evaluate(model_file, clean, "a.csv", fov)
    inside_wrong = _evaluate(model_file, wrong, "b.csv", fov)
    for name in (*NAMES.split(","), "pixel_accuracy"):
        assert inside_wrong[name] == inside_clean[name], name
    assert inside_wrong["intervals"] == inside_clean["intervals"]
    assert inside_clean["iou"] == 1.0 and inside_clean["hd95"] == 0.0 and inside_clean["pixel_accuracy"] == 1.0
    everywhere = _evaluate(model_file, wrong, "c.csv")
    assert everywhere["pixel_accuracy"] < 1.0 and everywhere["hd95"] > 0.0


def test_the_summary_line_and_the_csv_carry_the_intervals(fov_sets: tuple[Path, Path, Path], model_file: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, wrong, _ = fov_sets
    code = main(["evaluate", "--model", str(model_file), "--data", str(wrong), "--device", "cpu", "--csv",
                 "e.csv", "--metrics", "iou,hd95,nsd@2", "--bootstrap", "300"])
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("12 images  IoU ") and " HD95 " in line and " NSD@2px " in line
    assert line.endswith("[95% interval over images, 300 bootstrap resamples]")
    with Path("e.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["stem"] for row in rows[-3:]] == ["#all", "#ci95_low", "#ci95_high"]
    assert len(rows) == 12 + 3
    low, figure, high = (float(rows[i]["hd95"]) for i in (-2, -3, -1))
    assert low <= figure <= high
    assert float(rows[-3]["hd95"]) == pytest.approx(np.mean([float(row["hd95"]) for row in rows[:-3]]))


def test_unknown_metric_and_missing_region_are_one_line_errors(fov_sets: tuple[Path, Path, Path],
                                                               model_file: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    clean, _, shared_fov = fov_sets
    fov = Path(shutil.copytree(shared_fov, tmp_path / "fov_copy"))
    assert main(["evaluate", "--model", str(model_file), "--data", str(clean), "--metrics", "iou,hd99"]) == 2
    assert "unknown metric 'hd99'" in capsys.readouterr().err
    first = sorted(fov.glob("*.png"))[0]
    first.unlink()
    assert main(["evaluate", "--model", str(model_file), "--data", str(clean), "--fov", str(fov)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"no region mask for image '{first.stem}'" in err


SQUARE = np.zeros((32, 32), bool)
SQUARE[6:20, 8:26] = True


@pytest.fixture(scope="module")
def sized_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of 4 images whose masks are all SQUARE, with images saved as TIFF at 200 x 400 pixels per
    cm (x, y: 0.05 x 0.025 mm), as PNG at 508 x 254 dpi (0.05 x 0.1 mm), and `mixed`: the PNG folder
    with one image saved without a size. The untrained model's probabilities lie near 0.5: at threshold
    0.98 it predicts nothing, at 0.02 everything."""
    tmp_path = tmp_path_factory.mktemp("sized")
    synthetic_dir = generate_synthetic(tmp_path / "syn", 4, size=32, seed=5)
    folders = {name: tmp_path / name for name in ("tiff", "png", "mixed")}
    for folder in folders.values():
        (folder / "images").mkdir(parents=True)
        (folder / "masks").mkdir()
    for path in sorted((synthetic_dir / "images").glob("*.png")):
        image = read_array(path)[..., 0]
        tifffile.imwrite(folders["tiff"] / "images" / f"{path.stem}.tif", image, resolution=(200, 400),
                         resolutionunit="CENTIMETER")
        for folder in folders.values():
            Image.fromarray((SQUARE * 255).astype(np.uint8)).save(folder / "masks" / path.name)
        for name in ("png", "mixed"):
            Image.fromarray(image).save(folders[name] / "images" / path.name, dpi=(508, 254))
    Image.fromarray(image).save(folders["mixed"] / "images" / path.name)  # the last one: no size
    return folders


@pytest.mark.parametrize("kind,spacing", [("tiff", (0.025, 0.05)), ("png", (0.1, 0.05))])
def test_distances_come_in_the_pixel_size_the_files_declare(sized_sets: dict[str, Path], model_file: Path,
                                                             tmp_path: Path, kind: str,
                                                             spacing: tuple[float, float]) -> None:
    def rows(threshold: float) -> list[dict[str, str]]:
        result = evaluate(EvaluateConfig(model_path=str(model_file), data_dir=str(sized_sets[kind]), device="cpu",
                                         csv_path=str(tmp_path / f"{threshold}.csv"), metrics="hd95,nsd@0.1",
                                         resamples=0, threshold=threshold))
        assert result.metrics["distance_unit"] == "mm"
        with result.csv_path.open(newline="") as handle:
            found = list(csv.DictReader(handle))
        assert [row["distance_unit"] for row in found] == ["mm"] * 7 and found[-3]["stem"] == "#all"
        for row in found[:-3]:
            assert (float(row["spacing_dy"]), float(row["spacing_dx"])) == pytest.approx(spacing, rel=1e-9)
        return found[:-3]

    # nothing predicted: a missed square scores the image diagonal, 31 pixels down and across, in mm
    for row in rows(0.98):
        assert float(row["hd95"]) == pytest.approx(np.hypot(31 * spacing[0], 31 * spacing[1]), rel=1e-12)
    # everything predicted: the boundary distances between the image frame and the square, in mm
    for row in rows(0.02):
        assert float(row["hd95"]) == pytest.approx(boundary_figures(np.ones((32, 32), bool), SQUARE, spacing)["hd95"], rel=1e-12)
        assert float(row["hd95"]) != pytest.approx(boundary_figures(np.ones((32, 32), bool), SQUARE)["hd95"], rel=1e-3)


def test_a_folder_mixing_sized_and_unsized_images_is_one_line_or_pixels(sized_sets: dict[str, Path],
                                                                        model_file: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = tmp_path / "m.csv"
    command = ["evaluate", "--model", str(model_file), "--data", str(sized_sets["mixed"]), "--device", "cpu",
               "--csv", str(csv_path), "--metrics", "hd95,nsd@1", "--bootstrap", "20"]
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "would mix mm and pixels" in err and "--spacing px" in err
    assert not csv_path.exists()
    assert main([*command, "--spacing", "px"]) == 0
    line = capsys.readouterr().out.strip()
    assert " HD95 " in line and line.split(" HD95 ")[1].split("]")[1].startswith(" px ") and " NSD@1px " in line
    assert main([*command, "--spacing", "0.5,0.5mm", "--overwrite"]) == 0
    assert " mm  NSD@1mm " in capsys.readouterr().out
    with csv_path.open(newline="") as handle:
        assert {row["distance_unit"] for row in csv.DictReader(handle)} == {"mm"}
    assert main([*command[:-4], "--metrics", "iou", "--spacing", "0.5,0.5mm"]) == 2
    assert "no distance figure chosen" in capsys.readouterr().err


def test_evaluate_help_lists_the_metric_registry(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["evaluate", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    from unetkit.measures import MEASURES

    assert all(f"{name}: " in text for name in MEASURES)
    assert "--spacing DY,DXUNIT" in text
