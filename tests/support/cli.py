"""Running `fleet ...` in this process with its output captured per thread.

`contextlib.redirect_stdout` swaps `sys.stdout` for the whole process: two commands run at the
same time from two threads (a store waiting in the background while the test asks `where`) would
write into each other's buffers. `run_fleet` installs, once, a stream on `sys.stdout` and
`sys.stderr` that writes to the calling thread's buffer while it runs a command and to the
original stream otherwise.
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["in_background", "run_fleet"]

_local = threading.local()
_install = threading.Lock()


class _PerThread(io.TextIOBase):
    def __init__(self, name: str, fallback: TextIO) -> None:
        self._name = name
        self._fallback = fallback

    def write(self, text: str) -> int:
        target = getattr(_local, self._name, None) or self._fallback
        return target.write(text)

    def flush(self) -> None:
        (getattr(_local, self._name, None) or self._fallback).flush()

    def isatty(self) -> bool:
        return False


def _installed() -> None:
    with _install:
        if not isinstance(sys.stdout, _PerThread):
            sys.stdout = _PerThread("out", sys.stdout)  # type: ignore[assignment]
        if not isinstance(sys.stderr, _PerThread):
            sys.stderr = _PerThread("err", sys.stderr)  # type: ignore[assignment]


def run_fleet(argv: Sequence[str]) -> tuple[int, str, str]:
    """`fleet argv...` in this thread: its exit code, stdout and stderr."""
    from fleet.cli import main

    _installed()
    _local.out, _local.err = io.StringIO(), io.StringIO()
    try:
        code = main(list(argv))
        return code, _local.out.getvalue(), _local.err.getvalue()
    finally:
        _local.out = _local.err = None


def in_background(call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Start `call()` in a daemon thread; its return value lands in `outcome["result"]`."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        outcome["result"] = call()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome
