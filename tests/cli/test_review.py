"""`unetkit review` at the command line: one line for what cannot work, before anything is written."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from unetkit.cli.main import main


def test_without_the_review_extra_one_line_names_the_install(tiny_model_file: Path, synthetic_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    for name in ("uvicorn", "starlette", "unetkit.review.server"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if `pip install unetkit` without [review]
    monkeypatch.setitem(sys.modules, "starlette", None)
    code = main(["review", "--model", str(tiny_model_file), "--images", str(synthetic_dir / "images"),
                 "--out", str(tmp_path / "labels")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "pip install 'unetkit[review]'" in err
    assert not (tmp_path / "labels").exists()


def test_out_over_the_given_masks_is_refused(tiny_model_file: Path, synthetic_dir: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    code = main(["review", "--model", str(tiny_model_file), "--images", str(synthetic_dir / "images"),
                 "--masks", str(synthetic_dir / "masks"), "--out", str(synthetic_dir)])
    err = capsys.readouterr().err
    assert code == 2 and "would write into the --masks folder" in err and err.count("\n") == 1
