"""Will it fit? Sizes a user asks for, checked against the memory this machine has available,
before the first array is allocated.

A side of 60000 pixels is one typo away from 1000: without this check NumPy or PyTorch asks the allocator for tens
of gigabytes and dies with a traceback (or the kernel kills the process) after a run folder was begun. Each check
here turns that into one line naming the field, what the size needs, and the largest side that fits. The estimates
are lower bounds of what the step holds at once (bytes per pixel times pixels), so a size they refuse cannot work;
sizes they pass may still be slow. psutil is not a dependency: Linux's MemAvailable is what it reads too.
"""

from __future__ import annotations

import contextlib
import math
import os

from unetkit.errors import UserError

SYNTH_BYTES_PER_PIXEL = 128  # float64 fields of data/synthetic.py alive at once while one example is made


def available_memory() -> int:
    """Bytes this machine can give without swapping: MemAvailable on Linux, else half the physical memory."""
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 2**34  # no way to ask: assume a 16 GiB machine's share


def check_side_fits(name: str, side: int, bytes_per_pixel: float, what: str, *, available: int | None = None) -> None:
    """Refuse `side` x `side` pixels when `bytes_per_pixel` of them exceed the available memory; `name`: the field
    or flag as the user wrote it (`--size`), `what`: what is held (`one synthetic image`)."""
    available = available_memory() if available is None else available
    needed = float(side) ** 2 * bytes_per_pixel
    if needed <= available:
        return
    fits = max(0, math.isqrt(int(available / bytes_per_pixel)))
    raise UserError(f"{name} {side}: {what} at {side}x{side} needs {needed / 2**30:.1f} GiB, more than the "
                    f"{available / 2**30:.1f} GiB of memory available here; at most {fits} fits")
