"""How the review editor keeps up on a 5000 x 5000 image: the page driven in headless Chromium (Debian's,
through Playwright), brush moves timed inside the page and with their round trips.

Usage: python benchmarks/review_large_image.py  (a random tiny model: the figures are the editor's, not a model's)

"page work" is measured in the page with performance.now(): the mousemove handler (the stroke's pixels)
plus the frame it causes (`paint`), with the canvas flushed (a one-pixel getImageData) so that deferred
drawing is counted. "round trip" adds Playwright's two calls per move (move, then wait for a frame):
an upper bound, dominated by the machine's load.
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
MOVES = 40
FRAME = "new Promise(done => requestAnimationFrame(() => done()))"
# one stroke of MOVES mouse moves dispatched in the page; each move's handler and frame timed alone
PAGE_WORK = """async ([moves, dx, dy]) => {
  const { paint } = unetkitReview, view = document.getElementById('view');
  const flush = () => view.getContext('2d').getImageData(0, 0, 1, 1);
  const box = view.getBoundingClientRect(), x = box.left + box.width / 2, y = box.top + box.height / 2;
  const send = (type, i, target) => (target || window).dispatchEvent(
    new MouseEvent(type, { clientX: x + i * dx, clientY: y + i * dy, button: 0, bubbles: true }));
  await new Promise(done => requestAnimationFrame(() => done()));
  send('mousedown', 0, view);
  const times = [];
  for (let i = 1; i <= moves; i++) {
    const t = performance.now(); send('mousemove', i); paint(); flush(); times.push(performance.now() - t);
  }
  send('mouseup', moves);
  times.sort((a, b) => a - b);
  return [times[Math.floor(times.length / 2)], times[times.length - 1]];
}"""


def _round_trips(page, x: float, y: float, count: int, step: tuple[float, float]) -> float:
    """Milliseconds per mouse move sent by Playwright, each followed by the frame it causes."""
    started = time.perf_counter()
    for i in range(count):
        page.mouse.move(x + i * step[0], y + i * step[1])
        page.evaluate(FRAME)
    return (time.perf_counter() - started) / count * 1000


def _zoom(page, scale: float) -> None:
    """Set the view's scale about the canvas centre (as the wheel does about the cursor)."""
    page.evaluate("""(scale) => { const s = unetkitReview.state, v = document.getElementById('view');
      const mx = v.width / 2, my = v.height / 2;
      s.ox = mx - (mx - s.ox) * scale / s.scale; s.oy = my - (my - s.oy) * scale / s.scale; s.scale = scale; }""", scale)
    page.evaluate("unetkitReview.paint()")
    page.wait_for_function("unetkitReview.state.tiles.filter(t => t.loading && !t.picture).length === 0", timeout=60000)


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
            page.evaluate("document.getElementById('size').value = 24; "
                          "document.getElementById('size').dispatchEvent(new Event('input'))")
            fit = page.evaluate("unetkitReview.state.scale")
            for name, scale in (("whole image in view", fit), ("zoom 100%", 1.0), ("zoom 400%", 4.0)):
                _zoom(page, scale)
                median, worst = page.evaluate(PAGE_WORK, [MOVES, 4, 2])
                print(f"| brush move, page work, {name} (scale {scale:.3f}): median / max of {MOVES} | "
                      f"{median:.1f} / {worst:.1f} ms |")
                page.keyboard.press("Control+z")
            box = page.evaluate("(() => { const b = document.getElementById('view').getBoundingClientRect(); "
                                "return [b.left + b.width / 2, b.top + b.height / 2]; })()")
            page.mouse.move(*box)
            page.mouse.down()
            print(f"| brush move + frame, round trip, zoom 400% | {_round_trips(page, *box, MOVES, (5, 2)):.0f} ms |")
            page.mouse.up()
            page.keyboard.press("f")
            print(f"| pointer move + frame, round trip, whole image in view | {_round_trips(page, *box, 20, (3, 0)):.0f} ms |")
            browser.close()
        server.stop()


if __name__ == "__main__":
    main()
