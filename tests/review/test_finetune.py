"""The page's "train on corrections": a time-budgeted fine-tune in the background, then a new ranking."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.review.conftest import review_folder, tiny_model
from unetkit.config import ReviewConfig
from unetkit.data.io import read_array
from unetkit.review.finetune import MIN_MASKS, FinetuneJob
from unetkit.review.session import ReviewSession


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_training_on_corrections_fine_tunes_and_ranks_again(tmp_path: Path) -> None:
    data = review_folder(tmp_path / "data", 6, 32)
    session = ReviewSession(ReviewConfig(model_path=str(tiny_model(tmp_path / "model.safetensors")),
                                         images_dir=str(data / "images"), out_dir=str(tmp_path / "labels"),
                                         device="cpu", finetune_minutes=0.01))
    first_key = session.cache.key
    for key in sorted(session.images)[:MIN_MASKS + 1]:
        session.save(key, _png(read_array(data / "masks" / f"{key}.png")[:, :, 0]), seconds=1.0)
    job = FinetuneJob(session)
    assert job.start()["status"] == "training"
    job.thread.join(600)
    state = job.status()
    assert state["status"] == "done", state
    assert Path(state["model"]).is_file() and session.model_path == Path(state["model"])
    assert session.cache.key != first_key  # predicted again with the new model: its own cache folder
    assert sorted(item["id"] for item in session.items()) == sorted(session.images)
    assert sum(item["reviewed"] for item in session.items()) == MIN_MASKS + 1
