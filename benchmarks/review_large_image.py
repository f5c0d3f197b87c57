"""How the review editor keeps up on a 5000 x 5000 image: the page driven in headless Chromium (Debian's,
through Playwright), brush moves timed with the frame each one draws.

Usage: python benchmarks/review_large_image.py  (a random tiny model: the figures are the editor's, not a model's)
The time per move includes Playwright's round trips to the browser (two per move), so it is an upper bound.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unetkit.api import review
from unetkit.config import ReviewConfig
from unetkit.data.preprocess import identity_preprocess
from unetkit.export.model_file import save_model
from unetkit.models import UNet

SIDE = 5000
FRAME = "new Promise(done => requestAnimationFrame(() => done()))"


def _moves(page, x: float, y: float, count: int, step: tuple[float, float]) -> float:
    """Milliseconds per mouse move, each followed by the frame it causes."""
    started = time.perf_counter()
    for i in range(count):
        page.mouse.move(x + i * step[0], y + i * step[1])
        page.evaluate(FRAME)
    return (time.perf_counter() - started) / count * 1000


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="review-large-") as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        Image.fromarray((np.random.default_rng(0).random((SIDE, SIDE)) * 255).astype(np.uint8)).save(root / "images" / "big.png")
        torch.manual_seed(0)
        save_model(root / "model.safetensors", UNet(start_neurons=4, depth=2), identity_preprocess(1))
        started = time.perf_counter()
        server = review(ReviewConfig(model_path=str(root / "model.safetensors"), images_dir=str(root / "images"),
                                     out_dir=str(root / "labels"), device="cpu"))
        print(f"| predicting the {SIDE}x{SIDE} image (tiles of 256, tiny model) | {time.perf_counter() - started:.1f} s |")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"),
                                                 args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            started = time.perf_counter()
            page.goto(server.url)
            page.wait_for_selector("body[data-ready='1']", timeout=600000)
            print(f"| page ready with the image and its mask | {time.perf_counter() - started:.1f} s |")
            box = page.evaluate("(() => { const b = document.getElementById('view').getBoundingClientRect(); "
                                "return [b.left + b.width / 2, b.top + b.height / 2]; })()")
            for _ in range(6):
                page.mouse.wheel(0, -400)
            page.mouse.move(*box)
            page.mouse.down()
            print(f"| brush move + frame, zoomed in | {_moves(page, *box, 40, (5, 2)):.0f} ms |")
            page.mouse.up()
            page.keyboard.press("f")
            print(f"| pointer move + frame, whole image in view | {_moves(page, *box, 20, (3, 0)):.0f} ms |")
            browser.close()
        server.stop()


if __name__ == "__main__":
    main()
