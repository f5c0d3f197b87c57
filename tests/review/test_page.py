"""The review page in headless Chromium (Debian's, driven by Playwright's Python API): the list is the
API's order, a brush stroke drawn with the mouse is saved as its area, and undo restores the mask."""

from __future__ import annotations

import json
import math
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.review.conftest import review_folder, tiny_model
from unetkit.api import review
from unetkit.config import ReviewConfig
from unetkit.data.io import read_array

# Chromium starts once for the module (seconds): one xdist worker runs its tests.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("review-page")]

SIZE = 160  # image side: a stroke of radius 8 over 100 pixels covers ~1800 of them
RADIUS = 8
LENGTH = 100


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "Debian's chromium is needed (make test installs it: apt-get install chromium)"
    return binary


@pytest.fixture(scope="module")
def page_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    from playwright.sync_api import sync_playwright

    root = tmp_path_factory.mktemp("review-page")
    data = review_folder(root / "data", 3, SIZE, empty_masks=True)
    server = review(ReviewConfig(model_path=str(tiny_model(root / "model.safetensors")), images_dir=str(data / "images"),
                                 masks_dir=str(data / "masks"), out_dir=str(root / "labels"), device="cpu"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']", timeout=30000)
        try:
            yield server, page, root
        finally:
            browser.close()
            server.stop()


def _api_items(server) -> list[dict]:
    with urllib.request.urlopen(server.url.replace("/?", "/api/items?")) as response:
        return json.loads(response.read())


def _saved(root: Path, key: str) -> np.ndarray:
    return read_array(root / "labels" / "masks" / f"{key}.png")[:, :, 0] > 0


def test_list_order_is_the_api_order_of_scores(page_session: tuple) -> None:
    server, page, _ = page_session
    items = _api_items(server)
    shown = page.eval_on_selector_all("#items li", "lis => lis.map(li => li.dataset.id)")
    assert shown == [item["id"] for item in items]
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True)


def test_brush_stroke_is_saved_as_its_area_and_undo_restores_it(page_session: tuple) -> None:
    server, page, root = page_session
    key = page.evaluate("unetkitReview.state.id")
    assert key == _api_items(server)[0]["id"]  # opened at the most doubtful image
    page.evaluate(f"document.getElementById('size').value = {2 * RADIUS}; "
                  "document.getElementById('size').dispatchEvent(new Event('input'))")
    view = page.evaluate("(() => { const s = unetkitReview.state; const b = document.getElementById('view')"
                         ".getBoundingClientRect(); return [s.scale, s.ox + b.left, s.oy + b.top]; })()")
    scale, left, top = view
    y = 80.0
    start, end = (30.0, y), (30.0 + LENGTH, y)
    page.mouse.move(left + start[0] * scale, top + start[1] * scale)
    page.mouse.down()
    for step in range(1, 21):
        x = start[0] + (end[0] - start[0]) * step / 20
        page.mouse.move(left + x * scale, top + y * scale)
    page.mouse.up()
    page.keyboard.press("Control+s")
    page.wait_for_selector("body[data-saved='1']")
    stroke_area = 2 * RADIUS * LENGTH + math.pi * RADIUS**2  # a capsule: the brush's disc swept along the line
    painted = int(_saved(root, key).sum())
    assert abs(painted - stroke_area) <= 0.05 * stroke_area, (painted, stroke_area)

    page.keyboard.press("Control+z")
    page.keyboard.press("Control+s")
    page.wait_for_selector("body[data-saved='2']")
    assert int(_saved(root, key).sum()) == 0  # the given mask was empty: undo restored every pixel
    assert len(list((root / "labels" / "history" / key).iterdir())) == 1
