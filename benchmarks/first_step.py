"""Seconds from `unetkit train` to the first training step, on a folder given as the argument.

Runs the CLI in this process with `train_step` replaced by a stop watch: the figure covers imports,
config resolution, the pass over the folder (reading, hashing, fingerprint), the plan, the split,
the normalisation statistics, building the network and the first batch; the process exits there.

    PYTHONPATH=src python benchmarks/first_step.py /work/shared/data/tgs-salt
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

STARTED = time.monotonic()


def main() -> None:
    from unetkit.cli.main import main as cli
    from unetkit.training import loop

    def first_step(*_: object) -> None:
        print(f"first step after {time.monotonic() - STARTED:.1f} s", flush=True)
        os._exit(0)

    loop.train_step = first_step
    with tempfile.TemporaryDirectory() as out:
        sys.exit(cli(["-q", "train", "--data", sys.argv[1], "--out", f"{out}/run", "--epochs", "1"]))


if __name__ == "__main__":
    main()
