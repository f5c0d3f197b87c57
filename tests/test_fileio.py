from __future__ import annotations

import os
from pathlib import Path

import pytest

from unetkit import fileio
from unetkit.errors import UserError
from unetkit.fileio import atomic_path, write_text


def test_atomic_path_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else str(fd)
        size = os.fstat(fd).st_size
        events.append(("fsync", f"{Path(target).name}:{size}"))
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append(("replace", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    text = "x" * 100_000
    write_text(tmp_path / "out.txt", text)
    assert (tmp_path / "out.txt").read_text() == text
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "replace", "fsync"]
    file_synced, folder_synced = events[0][1], events[2][1]
    assert file_synced.endswith(":100000")  # the complete file
    if os.path.exists("/proc/self/fd"):  # Linux tells which file a descriptor is
        assert file_synced.startswith(".out.txt.")  # the temporary name, before the rename
        assert folder_synced.startswith(tmp_path.name + ":")
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_folder_that_cannot_be_fsynced_still_gets_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync
    calls = []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the folder: some filesystems answer EINVAL
            raise OSError(22, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with atomic_path(tmp_path / "m.bin") as tmp:
        tmp.write_bytes(b"model")
    assert (tmp_path / "m.bin").read_bytes() == b"model" and len(calls) == 2


def test_a_failure_inside_the_block_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "m.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    assert fileio.remove_stale_temporaries(tmp_path / "m.bin") == 0


def test_check_output_never_replaces_an_input_and_replaces_foreign_files_only_when_told(tmp_path: Path) -> None:
    from unetkit.fileio import check_output

    model, notes = tmp_path / "m.safetensors", tmp_path / "notes.txt"
    model.write_bytes(b"weights")
    notes.write_text("mine")
    with pytest.raises(UserError, match="m.safetensors: is an input of this command"):
        check_output(model, [model], overwrite=True)
    with pytest.raises(UserError, match="notes.txt: already exists and was not written by this command"):
        check_output(notes, [model])
    assert check_output(notes, [model], overwrite=True) == notes
    assert check_output(notes, [model], ours=lambda path: path.read_text() == "mine") == notes
    assert check_output(tmp_path / "new" / "deeper" / "out.csv", [model]).name == "out.csv"  # folders get made
    with pytest.raises(UserError, match="is a folder"):
        check_output(tmp_path, [model])
