"""Atomic file writes: every file unetkit writes appears complete or not at all.

A killed process must never leave a half-written model, mask or CSV under its final name: writers
produce a temporary file in the destination folder (same filesystem, so `os.replace` is atomic),
fsync it, rename it and fsync the folder (a rename can reach the disk before the data). Failures to
write (read-only folder, a file in the way, a full disk) are the user's to fix and become one line.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from unetkit.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


def make_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` (and parents) or fail with one line naming it."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{folder}: cannot create output folder ({exc.strerror or exc})") from None
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds."""
    final = Path(path)
    make_dir(final.parent)
    if final.is_dir():
        raise UserError(f"{final}: is a folder, cannot write a file there")
    tmp = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp" + final.suffix, dir=final.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes owner-only files; give the usual permissions
        _fsync(tmp)
        os.replace(tmp, final)
        _fsync(final.parent, folder=True)
    except OSError as exc:
        raise UserError(f"{final}: cannot write ({exc.strerror or exc})") from None
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


def _fsync(path: Path, *, folder: bool = False) -> None:
    """Flush `path` to disk: a file's data (its writer may have closed it without doing so), or a folder's
    rename where the OS allows it (Windows cannot open folders, some filesystems refuse to fsync one)."""
    with contextlib.suppress(OSError) if folder else contextlib.nullcontext():
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY" if folder else "O_BINARY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_stale_temporaries(path: str | os.PathLike[str]) -> int:
    """Delete temporary files that a killed writer of `path` left beside it; return how many."""
    final = Path(path)
    stale = list(final.parent.glob(f".{glob.escape(final.name)}.*.tmp{glob.escape(final.suffix)}"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return len(stale)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` atomically, as UTF-8. File names that are not valid UTF-8 reach Python
    as lone surrogates (PEP 383); they are written back as their original bytes, so a CSV naming such
    a file names it as the file system does instead of failing after all the work is done."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")


def write_csv(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """Same-keyed dicts as CSV (a header, then one line per dict), written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def check_output(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], *, overwrite: bool = False,
                 ours: Callable[[Path], bool] | None = None, flag: str = "--out") -> Path:
    """Refuse, before anything is written, an output that would replace one of the command's inputs
    (never allowed) or an existing file that unetkit did not write (allowed with --overwrite); `ours(path)`
    says whether an existing file is one this command wrote earlier (a re-run may replace it)."""
    out = Path(path)
    if out.is_dir():
        raise UserError(f"{out}: is a folder; {flag} needs a file path")
    if out.exists():
        resolved = out.resolve()
        for source in inputs:
            if Path(source).resolve() == resolved:
                raise UserError(f"{out}: is an input of this command; {flag} must name another file")
        if not overwrite and not (ours is not None and ours(out)):
            raise UserError(f"{out}: already exists and was not written by this command; choose another {flag} "
                            "or pass --overwrite")
    existing = next((p for p in [out.parent, *out.parent.parents] if p.exists()), Path("."))
    if not existing.is_dir():
        raise UserError(f"{existing}: cannot create output folder (a file of that name is in the way)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{out}: cannot be written (the folder {existing} is read-only)")
    return out


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB chunks (model files can be large)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
