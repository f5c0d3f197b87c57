"""FIFOs and broken symbolic links for the tests of readers that must refuse them without opening them."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def call_or_unblock(function: Callable[..., Any], *args: Any) -> Any:
    """Call function(*args) in a thread; if it blocks on a FIFO, open the FIFO's other end so the test ends."""
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(function(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():
        for arg in args:
            for path in [arg, *arg.rglob("*")] if isinstance(arg, Path) and arg.is_dir() else [arg]:
                if isinstance(path, Path) and path.is_fifo():
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail(f"{function.__name__} opened a FIFO and blocked")
    return outcome[0]


def make_special(path: Path, kind: str) -> str:
    """Create a FIFO, a symbolic link loop or a broken link at `path`; return the expected message."""
    if kind == "fifo":
        os.mkfifo(path)
        return f"{path}: is a FIFO (named pipe), not an image file; unetkit reads regular files only"
    if kind == "loop":
        os.symlink(path.name, path)
        return f"{path}: symbolic link loop (the link never reaches a file)"
    if kind == "broken":
        os.symlink("gone.png", path)
        return f"{path}: broken symbolic link (its target gone.png does not exist)"
    raise ValueError(kind)
