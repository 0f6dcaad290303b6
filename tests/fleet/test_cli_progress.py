"""`fleet activate|home|move` on a terminal: an elapsed-time line while the operation runs."""

from __future__ import annotations

import argparse
import io
import time

import pytest

from fleet.cli import ops


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _wait_for_text(stream: io.StringIO, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in stream.getvalue():
        assert time.monotonic() < deadline, stream.getvalue()
        time.sleep(0.05)


def test_progress_line_is_drawn_while_the_block_runs_and_erased_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with ops._progress(argparse.Namespace(json=False), "resort-a: activate hotel"):
        _wait_for_text(terminal, "\rresort-a: activate hotel ... ")
    drawn = terminal.getvalue()
    assert drawn.endswith("\r\033[K")  # the line is gone before the result is printed
    time.sleep(0.3)
    assert terminal.getvalue() == drawn  # nothing drawn after the block


@pytest.mark.parametrize(("json_output", "tty"), [(True, True), (False, False)])
def test_no_progress_line_for_json_or_a_pipe(
    monkeypatch: pytest.MonkeyPatch, json_output: bool, tty: bool
) -> None:
    stream = _Terminal() if tty else io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    with ops._progress(argparse.Namespace(json=json_output), "resort-a: go home"):
        time.sleep(0.3)
    assert stream.getvalue() == ""
