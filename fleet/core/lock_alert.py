"""The `lock-held` incident: a resort lock held past the fleet's bound, reported by its holder.

Only a live holder can keep a resort lock (its lease is renewed by the holder's process), so the
holder is the one that knows how long it has held it: `HeldTooLong` starts a timer when the lock
is granted, emits `plate-resort.alert.lock-held.raised` once the bound has passed and
`...cleared` when the lock is released or left to expire (`fleet.core.alerts` has the automations).
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

from resort_common import names

__all__ = ["HeldTooLong"]

logger = logging.getLogger(__name__)


class HeldTooLong:
    """Reports a resort lock held past a bound, once, and its release (see the module doc)."""

    def __init__(self, resort: str, after: float, run_id: str | None, run_name: str | None):
        self.resort, self.after = resort, after
        self.run = f"{run_name} ({run_id})" if run_id else None
        self.since = time.time()
        self.raised = False
        self.ended = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(after, contextvars.copy_context().run, (self._raise,))
        self._timer.daemon = True
        self._timer.start()

    def _payload(self, message: str) -> dict[str, Any]:
        holder = self.run or f"process {os.getpid()} on {socket.gethostname()}"
        return {
            "kind": "lock-held",
            "message": message.format(holder=holder),
            "since": datetime.fromtimestamp(self.since, UTC).isoformat(timespec="seconds"),
            "run": self.run,
            "host": socket.gethostname(),
        }

    def _raise(self) -> None:
        with self._lock:
            if self.ended:  # released meanwhile
                return
            self.raised = True
        _emit_alert(
            "raised",
            self.resort,
            self._payload(
                f"lock of {self.resort} held for more than {self.after:g} s by {{holder}}"
            ),
        )

    def end(self, how: str = "released") -> None:
        """The lock is released (or left to expire): report it if the bound was passed."""
        self._timer.cancel()
        with self._lock:
            report = self.raised and not self.ended
            self.ended = True
        if report:
            held = time.time() - self.since
            _emit_alert(
                "cleared",
                self.resort,
                self._payload(f"lock of {self.resort} {how} after {held:.0f} s by {{holder}}"),
            )


def _emit_alert(edge: str, resort: str, payload: dict[str, Any]) -> None:
    from prefect.events import emit_event

    try:
        emit_event(
            f"plate-resort.alert.lock-held.{edge}",
            resource={
                "prefect.resource.id": names.resource_id(resort),
                "prefect.resource.name": resort,
            },
            payload=payload,
        )
    except Exception as exc:  # an alert must never break the lock it reports on
        logger.warning("could not report the lock of %s: %s", resort, exc)
