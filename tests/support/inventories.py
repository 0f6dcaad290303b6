"""The one inventory writer of the tests: small valid files (unique fleet, pool, resort names).

Resorts are emulated; each one's serial port is `tty-<name>` beside the file, where an agent
started on the inventory creates its emulator (or where `start_emulator` puts one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEFAULTS", "write_inventory"]

#: Every per-resort setting the inventory requires, with harmless values.
DEFAULTS: dict[str, Any] = {
    "baudrate": 57600,
    "motor_id": 1,
    "hotels": ["A", "B", "C", "D"],
    "rooms_per_hotel": 20,
    "offset_angle": 0.0,
    "rotation_direction": 1,
    "speed": 60.0,
    "acceleration": 240.0,
    "position_tolerance": 1.0,
    "move_timeout": 20.0,
    "max_temperature": 70.0,
    "min_voltage": 10.0,
    "max_voltage": 14.8,
    "max_current": 2.0,
    "emulate": True,
    "active": True,
}


def write_inventory(
    path: Path,
    fleet: str,
    resorts: Iterable[str | Mapping[str, Any]],
    *,
    defaults: Mapping[str, Any] | None = None,
    **fleet_options: Any,
) -> Path:
    """Write an inventory for fleet `fleet` (pool `<fleet>-resorts`) with the given resorts.

    Args:
        path: the YAML file to write.
        fleet: fleet name (also the prefix of its pools).
        resorts: resort names, or mappings with `name` and per-resort overrides.
        defaults: overrides of `DEFAULTS` (the `defaults:` block), e.g. `{"speed": 90}`.
        **fleet_options: extra keys of the `fleet:` block (`max_concurrent_moves`, `api_url`,
            `control_pool`, `alerts`, ...).
    """
    entries = []
    for r in resorts:
        entry = {"name": r} if isinstance(r, str) else dict(r)
        entry.setdefault("host", "127.0.0.1")
        entry.setdefault("serial_port", f"tty-{entry['name']}")
        entries.append(entry)
    doc = {
        "fleet": {"name": fleet, "work_pool": f"{fleet}-resorts", **fleet_options},
        "defaults": {**DEFAULTS, **(defaults or {})},
        "resorts": entries,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
