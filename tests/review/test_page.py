"""The review page in headless Chromium (Debian's, driven by Playwright's Python API): the list is the
API's order, a brush stroke drawn with the mouse is saved as its area, and undo restores the mask; a
multi-class model's page shows classes.yaml's names and colours and saves the class painted."""

from __future__ import annotations

import json
import math
import shutil
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.review.conftest import classes_model, review_folder, tiny_model
from unetkit.api import review
from unetkit.config import ReviewConfig
from unetkit.data.io import read_array

# Chromium starts once for the module (seconds): one xdist worker runs its tests.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("review-page")]

SIZE = 160  # image side: a stroke of radius 8 over 100 pixels covers ~1800 of them
RADIUS = 8
LENGTH = 100
CLASSES = [{"name": "background", "color": [0, 0, 0]}, {"name": "sand", "color": [20, 200, 40]},
           {"name": "rock", "color": [200, 30, 220]}]  # colours no default palette holds


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "Debian's chromium is needed (make test installs it: apt-get install chromium)"
    return binary


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox", "--disable-gpu"])
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def _open_page(browser, config: ReviewConfig) -> Iterator[tuple]:
    """A review server for `config` and the page on it, ready (its first image opened)."""
    server = review(config)
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    try:
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']", timeout=30000)
        yield server, page
    finally:
        page.close()
        server.stop()


@pytest.fixture(scope="module")
def page_session(browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    root = tmp_path_factory.mktemp("review-page")
    data = review_folder(root / "data", 3, SIZE, empty_masks=True)
    config = ReviewConfig(model_path=str(tiny_model(root / "model.safetensors")), images_dir=str(data / "images"),
                          masks_dir=str(data / "masks"), out_dir=str(root / "labels"), device="cpu")
    with _open_page(browser, config) as (server, page):
        yield server, page, root


@pytest.fixture(scope="module")
def classes_session(browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """A 3-class model trained (here: random weights) on data whose classes.yaml names CLASSES."""
    root = tmp_path_factory.mktemp("review-classes")
    data = review_folder(root / "data", 2, SIZE, empty_masks=True)
    (data / "classes.yaml").write_text(yaml.safe_dump({"classes": CLASSES}), encoding="utf-8")
    config = ReviewConfig(model_path=str(classes_model(root / "model.safetensors", data, 3)), images_dir=str(data / "images"),
                          masks_dir=str(data / "masks"), out_dir=str(root / "labels"), device="cpu")
    with _open_page(browser, config) as (server, page):
        yield server, page, root


def _api_items(server) -> list[dict]:
    with urllib.request.urlopen(server.url.replace("/?", "/api/items?")) as response:
        return json.loads(response.read())


def _saved(root: Path, key: str) -> np.ndarray:
    return read_array(root / "labels" / "masks" / f"{key}.png")[:, :, 0] > 0


def _stroke(page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A brush stroke of radius RADIUS from `start` to `end` (image pixels), drawn with mouse events."""
    page.evaluate(f"document.getElementById('size').value = {2 * RADIUS}; "
                  "document.getElementById('size').dispatchEvent(new Event('input'))")
    scale, left, top = page.evaluate("(() => { const s = unetkitReview.state; const b = document.getElementById('view')"
                                     ".getBoundingClientRect(); return [s.scale, s.ox + b.left, s.oy + b.top]; })()")
    page.mouse.move(left + start[0] * scale, top + start[1] * scale)
    page.mouse.down()
    for step in range(1, 21):
        x, y = (start[i] + (end[i] - start[i]) * step / 20 for i in range(2))
        page.mouse.move(left + x * scale, top + y * scale)
    page.mouse.up()


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
    _stroke(page, (30.0, 80.0), (30.0 + LENGTH, 80.0))
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


def test_zoomed_out_the_reduced_overlay_shows_an_edit_and_its_undo(page_session: tuple) -> None:
    """The level of a large image, put on the small one: one overlay pixel per 4 x 4 block, repainted by the edit."""
    _, page, _ = page_session
    overview_alpha = """() => { const s = unetkitReview.state; s.scale = 0.2; unetkitReview.paint();
      const a = s.overview.getContext('2d').getImageData(0, 0, s.overview.width, s.overview.height).data;
      return [s.overview.width, a[4 * (20 * s.overview.width + 20) + 3], a[4 * (5 * s.overview.width + 5) + 3]]; }"""
    page.evaluate("""() => { const s = unetkitReview.state; s.level = 4; s.reduced = s.image; s.image = null;
      s.labels.fill(0); makeTiles();
      const e = beginEdit(); paintSegment(e, {x: 78, y: 80}, {x: 84, y: 80}, 3, 1); commit(e); }""")
    assert page.evaluate(overview_alpha) == [SIZE // 4, 255, 0]  # block (20, 20) holds the stroke, (5, 5) nothing
    page.evaluate("undo()")
    assert page.evaluate(overview_alpha) == [SIZE // 4, 0, 0]
    page.evaluate("unetkitReview.state.dirty = false; open(unetkitReview.state.index)")  # the page as it was


def _overlay_rgb(page, x: float, y: float) -> list[int]:
    """The view canvas's colour over image pixel (x, y), after the next frame."""
    page.evaluate("new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    return page.evaluate("([x, y]) => { const s = unetkitReview.state, c = document.getElementById('view');"
                         "return Array.from(c.getContext('2d').getImageData(Math.round(s.ox + x * s.scale),"
                         "Math.round(s.oy + y * s.scale), 1, 1).data.slice(0, 3)); }", [x, y])


def test_multiclass_page_shows_classes_yaml_and_saves_the_class_painted(classes_session: tuple) -> None:
    _, page, root = classes_session
    key = page.evaluate("unetkitReview.state.id")
    options = page.eval_on_selector_all("#class option", "os => os.map(o => [o.value, o.textContent, o.style.color])")
    assert options == [["1", "1 sand", "rgb(20, 200, 40)"], ["2", "2 rock", "rgb(200, 30, 220)"]]
    page.evaluate("document.getElementById('opacity').value = 100; "
                  "document.getElementById('opacity').dispatchEvent(new Event('input'))")
    page.select_option("#class", "1")
    _stroke(page, (30.0, 40.0), (30.0 + LENGTH, 40.0))
    page.select_option("#class", "2")
    _stroke(page, (30.0, 110.0), (30.0 + LENGTH, 110.0))
    assert _overlay_rgb(page, 80.0, 40.0) == CLASSES[1]["color"]  # opacity 1: the overlay's colour itself
    assert _overlay_rgb(page, 80.0, 110.0) == CLASSES[2]["color"]
    page.keyboard.press("Control+s")
    page.wait_for_selector("body[data-saved='1']")

    saved = read_array(root / "labels" / "masks" / f"{key}.png", palette_indices=True)[:, :, 0]
    stroke_area = 2 * RADIUS * LENGTH + math.pi * RADIUS**2
    for value in (1, 2):
        painted = int(np.count_nonzero(saved == value))
        assert abs(painted - stroke_area) <= 0.05 * stroke_area, (value, painted, stroke_area)
    assert int(saved[110, 80]) == 2 and int(saved[40, 80]) == 1
    written = yaml.safe_load((root / "labels" / "classes.yaml").read_text(encoding="utf-8"))["classes"]
    assert written == CLASSES  # `train --data LABELS` reads the saved masks with the same names and colours
