"""Progress where a person reads it: a live bar on a terminal, log lines in a log file."""

from __future__ import annotations

import io
import logging

import pytest

import unetkit.runtime as runtime


def test_off_a_terminal_progress_becomes_log_lines_after_the_first_30_seconds(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    root = logging.getLogger()  # stream handlers that earlier CLI runs left on the root logger: not this test's
    monkeypatch.setattr(root, "handlers", [h for h in root.handlers if type(h) is not logging.StreamHandler])
    monkeypatch.setattr(runtime.sys, "stderr", io.StringIO())  # stderr sent to a file: not a terminal
    clock = iter(range(0, 10_000, 20))  # every tqdm time reading is 20 s after the last
    monkeypatch.setattr("tqdm.std.time", lambda: float(next(clock)))
    with caplog.at_level(logging.INFO, logger="unetkit"):
        for _ in runtime.progress(range(10), total=10, desc="predict", unit="img"):
            pass
    lines = [r.getMessage() for r in caplog.records]
    assert lines and all(line.startswith("predict:") for line in lines)
    assert any("/10" in line for line in lines)
    assert runtime.sys.stderr.getvalue() == ""  # no carriage-return bar in the log file


def test_on_other_torchrun_ranks_there_is_no_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.distributed, "is_main", lambda: False)
    assert runtime.progress(range(3)).disable


@pytest.mark.parametrize(("flags", "native"), [({"avx512f", "avx512_bf16"}, True), ({"amx_bf16"}, True),
                                               ({"avx512f", "avx2"}, False), (set(), False)])
def test_a_cpu_has_bf16_only_with_bf16_instructions(monkeypatch: pytest.MonkeyPatch, flags: set[str],
                                                     native: bool) -> None:
    import torch

    monkeypatch.setattr(runtime, "_cpu_flags", lambda: frozenset(flags))
    assert runtime.has_bf16(torch.device("cpu")) is native


@pytest.mark.parametrize(("level", "shown"), [(logging.INFO, True), (logging.WARNING, False)])
def test_on_a_terminal_quiet_logging_hides_the_bar(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                                   level: int, shown: bool) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(runtime.sys, "stderr", Terminal())
    caplog.set_level(level)  # logging set up with a handler, as the CLI does (WARNING under -q)
    bar = runtime.progress(range(3))
    assert bar.disable is not shown
    bar.close()


def test_off_a_terminal_a_nested_tile_bar_logs_no_cursor_moves(monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [h for h in root.handlers if type(h) is not logging.StreamHandler])
    monkeypatch.setattr(runtime.sys, "stderr", io.StringIO())
    clock = iter(range(0, 10_000, 20))
    monkeypatch.setattr("tqdm.std.time", lambda: float(next(clock)))
    with caplog.at_level(logging.INFO, logger="unetkit"):
        images = runtime.progress(total=1, desc="predict", unit="img")
        tiles = runtime.progress(total=10, desc="big.tif", unit="tile", leave=False)
        for _ in range(10):
            tiles.update(1)
        tiles.close()
        images.update(1)
        images.close()
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("big.tif:") and "/10" in line for line in lines)
    assert all(line.startswith(("predict:", "big.tif:")) for line in lines)  # no line of escape codes
