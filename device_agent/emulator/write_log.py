"""The emulated servo's write log: accepted writes of the items that matter, boots and power cycles.

`WriteLog` keeps every entry in `entries` and, with a path, appends each as one JSON line (the
`--log` file of `device-agent emulate`). An entry is ``{"t", "motor_id", "addr", "name", "value",
"moving", "torque"}``; a reboot or power cycle has ``addr`` and ``value`` None and no ``torque``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, TextIO

from device_agent import control_table as ct

__all__ = ["LOGGED_ITEMS", "WriteLog"]

# Items whose writes go to the write log.
LOGGED_ITEMS = frozenset(
    {
        "goal_position",
        "goal_current",
        "torque_enable",
        "profile_velocity",
        "profile_acceleration",
        "operating_mode",
        "drive_mode",
        "shutdown",
        "bus_watchdog",
    }
)


class WriteLog:
    """The entries so far, and the JSON-lines file they are appended to.

    Args:
        path: optional file (appended, line-buffered); None keeps the entries in memory only.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.entries: list[dict[str, Any]] = []
        self.path = Path(path) if path is not None else None
        self._file: TextIO | None = None
        if self.path is not None:
            self._file = self.path.open("a", encoding="utf-8", buffering=1)

    def write(self, motor_id: int, it: ct.Item, value: int, *, moving: bool, torque: bool) -> None:
        """Log an accepted write of `it` if it is one of `LOGGED_ITEMS`.

        Args:
            moving: a profile was still running (or a held move was pending).
            torque: torque was on before the write (a goal written with torque off does not move).
        """
        if it.name in LOGGED_ITEMS:
            entry = {"addr": it.address, "name": it.name, "value": value, "moving": moving}
            self._append(motor_id, {**entry, "torque": torque})

    def event(self, motor_id: int, name: str, *, moving: bool) -> None:
        """Log a boot (``reboot``) or a ``power-cycle``."""
        self._append(motor_id, {"addr": None, "name": name, "value": None, "moving": moving})

    def close(self) -> None:
        """Close the file (the entries stay)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _append(self, motor_id: int, entry: dict[str, Any]) -> None:
        record = {"t": time.time(), "motor_id": motor_id, **entry}
        self.entries.append(record)
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
