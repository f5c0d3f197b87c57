from __future__ import annotations

import base64
import csv
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from unetkit.cli.main import main


@pytest.mark.slow
def test_training_writes_a_self_contained_report(synthetic_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["-q", "train", "--data", str(synthetic_dir), "--out", str(run), "--preset", "small",
                 "--batch-size", "4", "--epochs", "3", "--device", "cpu"]) == 0
    page = (run / "report.html").read_text(encoding="utf-8")
    with (run / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3
    for row in rows:  # every figure of metrics.csv, digit for digit
        for value in row.values():
            assert f"<td>{value}</td>" in page
    assert "src=\"http" not in page and "<link" not in page  # nothing loaded from elsewhere
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3  # curves, threshold sweep, best/worst validation images
    sizes = [Image.open(io.BytesIO(base64.b64decode(data))).size for data in images]
    assert all(width > 100 and height > 100 for width, height in sizes)
    assert "Best and worst validation images by IoU" in page and "worst syn_" in page
    # the CLI rewrites it from the run folder alone
    (run / "report.html").unlink()
    assert main(["-q", "report", str(run), "--device", "cpu"]) == 0
    assert (run / "report.html").read_text(encoding="utf-8").count("data:image/png;base64,") == 3


def test_report_of_a_folder_that_is_not_a_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "not a finished training run" in capsys.readouterr().err
