"""`make test-browser`: render a run report in headless Chromium and fail if the page shows an error
or a broken image.

Trains a tiny run on synthetic data (or takes RUN_DIR), then asks Chromium twice: for the DOM after
the page's own check has run (body data-images="ok" once every picture decoded) and for a
screenshot, written to runs/report-screenshot.png and required to be more than a blank page.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(*args: str, profile: Path) -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise SystemExit("chromium not found (make test-browser installs Debian's chromium)")
    done = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"chromium failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def tiny_run(root: Path) -> Path:
    from unetkit.cli.main import main
    from unetkit.data.synthetic import generate_synthetic

    data = generate_synthetic(root / "data", 24, size=48, seed=0)
    if main(["-q", "train", "--data", str(data), "--out", str(root / "run"), "--preset", "small", "--epochs", "3",
             "--batch-size", "4", "--device", "cpu"]) != 0:
        raise SystemExit("training the tiny run failed")
    return root / "run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", help="a finished run (default: train a tiny one)")
    parser.add_argument("--screenshot", default="runs/report-screenshot.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="unetkit-browser-") as tmp:
        work = Path(tmp)
        run = Path(args.run_dir) if args.run_dir else tiny_run(work)
        page = (run / "report.html").resolve()
        if not page.is_file():
            raise SystemExit(f"{page}: no report (run `unetkit report {run}`)")
        url = page.as_uri()
        dom = chromium("--virtual-time-budget=10000", "--dump-dom", url, profile=work / "profile-dom")
        if 'data-images="ok"' not in dom:
            state = "broken" if 'data-images="broken"' in dom else "never checked (page script did not run)"
            raise SystemExit(f"{page}: images {state}")
        shot = Path(args.screenshot).resolve()
        shot.parent.mkdir(parents=True, exist_ok=True)
        chromium("--window-size=1200,2400", f"--screenshot={shot}", url, profile=work / "profile-shot")
        pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
        if pixels.std() < 5:
            raise SystemExit(f"{shot}: the page rendered blank")
        print(f"report rendered: every image decoded; screenshot {shot} ({pixels.shape[1]}x{pixels.shape[0]})")


if __name__ == "__main__":
    sys.exit(main())
