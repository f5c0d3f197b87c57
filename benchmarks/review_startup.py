"""Time to the first page of `unetkit review` on 1000 TGS images (first start, then with the predictions
cached), and the time of one save, measured as a user meets them: the command started as a process,
the page and what it loads first fetched over HTTP.

Usage: python benchmarks/review_startup.py --model RUN/model.safetensors [--images DIR] [--n 1000]
Writes nothing but a temporary folder; prints one table row per figure for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

TGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tgs-salt" / "images"


def first_page(model: Path, images: Path, out: Path) -> tuple[float, str, subprocess.Popen]:
    """Seconds from starting `unetkit review` until the page, its script, the list and the first
    image's picture and prediction have all been answered."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "unetkit", "-q", "review", "--model", str(model), "--images",
                                str(images), "--out", str(out), "--device", "cpu"], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline() if process.stdout else ""
    if "http://" not in line:
        process.kill()
        raise SystemExit(f"review did not start: {line!r}")
    url = line.split("open ", 1)[1].split()[0]
    base, token = url.split("/?token=")
    get = lambda path: urllib.request.urlopen(f"{base}{path}{'&' if '?' in path else '?'}token={token}").read()  # noqa: E731
    get("/")
    get("/static/editor.js")
    get("/api/info")
    first = get("/api/items")[:200].decode().split('"id":"', 1)[1].split('"', 1)[0]
    get(f"/api/items/{first}/image")
    get(f"/api/items/{first}/prediction")
    return time.perf_counter() - started, f"{base}/api/items/{{}}/mask?token={token}", process


def save_seconds(mask_url: str, images: Path, repeats: int = 20) -> float:
    """Median seconds of one PUT of a mask (a 101 x 101 PNG for TGS) answered by the server."""
    times = []
    for path in sorted(images.iterdir())[:repeats]:
        side = Image.open(path).size
        mask = np.zeros(side[::-1], np.uint8)
        mask[: side[1] // 2] = 255
        buffer = io.BytesIO()
        Image.fromarray(mask).save(buffer, format="PNG")
        request = urllib.request.Request(mask_url.format(path.stem), data=buffer.getvalue(), method="PUT")
        started = time.perf_counter()
        urllib.request.urlopen(request).read()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", default=str(TGS))
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="review-bench-") as tmp:
        images = Path(tmp) / "images"
        images.mkdir()
        for path in sorted(Path(args.images).iterdir())[: args.n]:
            shutil.copyfile(path, images / path.name)
        out = Path(tmp) / "labels"
        for name in ("first start (predicts and caches)", "second start (cached)"):
            seconds, mask_url, process = first_page(Path(args.model), images, out)
            print(f"| time to first page, {args.n} images, {name} | {seconds:.1f} s |", flush=True)
            if name.startswith("second"):
                print(f"| one save (PUT of a mask, median of 20) | {1000 * save_seconds(mask_url, images):.0f} ms |")
            process.terminate()
            process.wait(30)
    print(f"cpu cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
