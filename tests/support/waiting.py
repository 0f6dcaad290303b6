"""Wait for a condition instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float, interval: float = 0.1, what: str = ""
) -> T:
    """Poll `predicate` until it returns a truthy value, and return that value.

    Raises:
        AssertionError: `timeout` seconds passed; names `what` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}: {last!r}")
