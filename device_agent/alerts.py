"""Incident edges of one resort, reported once each: the agent's half of the fleet's alerts.

The agent publishes its status on every change and every heartbeat. `AlertTracker.observe` turns
each published status into the resort's current incidents (`conditions`), and emits
`plate-resort.alert.<kind>.raised` when one starts and `...cleared` when it ends:

* `hardware-error`: the last servo reading has Hardware Error Status bits (overload, ...);
* `link-lost`: the serial link is down (the agent keeps retrying the port);
* `estop`: the e-stop latch is set.

`AlertTracker.beat` runs after each successful publication. When the previous one is older than
the fleet's `offline_after` bound and the agent did not stop cleanly, the server has reported the
agent offline meanwhile (its proactive automation counts the same heartbeats), so the tracker
reports `agent-offline` cleared.

The open incidents and the time of the last heartbeat live in `<state_dir>/alerts.json`
(written atomically), so a restarted agent neither repeats an open incident nor forgets one that
ended while it was down. The event names are the fleet's (`resort_common.events`).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from resort_common.events import AGENT_KINDS, cleared_event, raised_event

__all__ = [
    "AlertTracker",
    "conditions",
]

logger = logging.getLogger(__name__)


#: seconds between two writes of the heartbeat record, at most one per this interval
BEAT_RECORD_INTERVAL = 1.0

Emit = Callable[[str, dict[str, Any]], None]


def conditions(status: Mapping[str, Any]) -> dict[str, str]:
    """The resort's open incidents in a status document: kind -> one-line description."""
    out: dict[str, str] = {}
    health = status.get("health") or {}
    errors = list(health.get("hardware_errors") or [])
    if errors:
        out["hardware-error"] = f"servo hardware error: {', '.join(errors)} (torque is off)"
    if not status.get("connected"):
        reason = status.get("last_error") or "no answer"
        out["link-lost"] = f"serial link lost: {reason}"
    if status.get("estopped"):
        reason = status.get("estop_reason")
        out["estop"] = "e-stop engaged" + (f": {reason}" if reason else "")
    return out


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(timespec="seconds")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class AlertTracker:
    """Open incidents of one resort, their edges as events, and the heartbeat record.

    Args:
        path: the JSON file that remembers them across restarts (None: memory only).
        worker: the agent's worker name (named in every notification).
        emit: called with (event name, payload) for each edge.
        offline_after: the fleet's offline bound in seconds (None: alerts are off, so
            `beat` reports no return from offline).
        clock: wall clock (epoch seconds), for tests.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        worker: str,
        emit: Emit,
        offline_after: float | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.worker = worker
        self.host = socket.gethostname()
        self.offline_after = offline_after
        self._emit = emit
        self._clock = clock
        self.open: dict[str, dict[str, Any]] = {}
        self.last_beat: float | None = None
        self.clean_stop = True
        self._saved_beat = 0.0
        self._load()

    # ---------------------------------------------------------------- persistence
    def _load(self) -> None:
        if self.path is None:
            return
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            logger.warning("%s unreadable (%s): incidents start afresh", self.path, exc)
            return
        if isinstance(data, dict):
            self.open = {
                k: dict(v) for k, v in (data.get("open") or {}).items() if isinstance(v, dict)
            }
            beat = data.get("last_beat")
            self.last_beat = float(beat) if isinstance(beat, int | float) else None
            self.clean_stop = bool(data.get("clean_stop", True))

    def _save(self) -> None:
        if self.path is None:
            return
        record = {"open": self.open, "last_beat": self.last_beat, "clean_stop": self.clean_stop}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(record))
            os.replace(tmp, self.path)
        except OSError as exc:
            logger.warning("cannot record incidents in %s: %s", self.path, exc)

    # ---------------------------------------------------------------- edges
    def _payload(self, kind: str, message: str, run: str | None, since: float) -> dict[str, Any]:
        return {
            "kind": kind,
            "message": message,
            "since": _iso(since),
            "worker": self.worker,
            "host": self.host,
            "run": run,
        }

    def observe(self, status: Mapping[str, Any]) -> None:
        """Compare a published status with the open incidents; emit what started or ended.

        An offline status (the agent's own last word at shutdown) changes nothing: incidents
        are judged again by the next agent.
        """
        if not status.get("online"):
            return
        now = self._clock()
        run = status.get("current_run")
        current = conditions(status)
        changed = False
        for kind in AGENT_KINDS:
            message = current.get(kind)
            if message is not None and kind not in self.open:
                self.open[kind] = {"since": now, "message": message}
                self._emit(raised_event(kind), self._payload(kind, message, run, now))
                changed = True
            elif message is None and kind in self.open:
                since = float(self.open.pop(kind).get("since") or now)
                text = f"{message_title(kind)} cleared after {_duration(now - since)}"
                self._emit(cleared_event(kind), self._payload(kind, text, run, since))
                changed = True
        if changed:
            self._save()

    def beat(self) -> None:
        """Record a successful publication; report the end of an offline incident if any."""
        now = self._clock()
        last, clean = self.last_beat, self.clean_stop
        if (
            self.offline_after is not None
            and last is not None
            and not clean
            and now - last > self.offline_after
        ):
            gap = now - last
            self._emit(
                cleared_event("agent-offline"),
                self._payload(
                    "agent-offline",
                    f"agent back online after {_duration(gap)} without a heartbeat",
                    None,
                    last,
                ),
            )
        self.last_beat, self.clean_stop = now, False
        if not clean and now - self._saved_beat < BEAT_RECORD_INTERVAL:
            return  # publications come in bursts during a move; spare the Pi's SD card
        self._saved_beat = now
        self._save()

    def stopped(self) -> None:
        """The agent stops cleanly: its silence from now on is not an incident."""
        self.clean_stop = True
        self._save()


def message_title(kind: str) -> str:
    """Short name of an incident kind for messages ("e-stop", "serial link loss")."""
    return {
        "hardware-error": "servo hardware error",
        "link-lost": "serial link loss",
        "estop": "e-stop",
        "agent-offline": "agent offline",
    }.get(kind, kind)
