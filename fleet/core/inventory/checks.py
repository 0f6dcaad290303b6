"""Checks of an inventory file across keys and resorts, which one field's type cannot express.

They run on the raw YAML data (so they report even when other fields fail validation): the
control pool differs from the device pool, the offline bound covers two agent heartbeats,
min_voltage < max_voltage, unique resort names, `hotels` set somewhere, relative serial paths only
for emulated resorts, and one resort per host and serial port.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fleet.core.inventory._yaml import KeyPath, Problems, show_value
from fleet.core.inventory.fleet_block import DEFAULT_AGENT_HEARTBEAT, OFFLINE_BEATS
from fleet.core.inventory.resolved import resolve_port
from fleet.core.inventory.resort_block import BUILTIN_DEFAULTS

__all__ = ["cross_checks"]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_pools(fleet: Mapping[str, Any], problems: Problems) -> None:
    """The parent flows' pool must not be the device pool (also when it is the default)."""
    control, work, name = fleet.get("control_pool"), fleet.get("work_pool"), fleet.get("name")
    if control is not None and control == work:
        problems.add(("fleet", "control_pool"), "must differ from fleet.work_pool")
    elif control is None and isinstance(name, str) and work == f"{name}-control":
        problems.add(
            ("fleet", "work_pool"),
            f"must differ from the control pool (default {name}-control; set fleet.control_pool)",
        )


def _check_offline_bound(fleet: Mapping[str, Any], problems: Problems) -> None:
    """An agent is not offline before it has missed at least two heartbeats."""
    alerts = fleet.get("alerts")
    bound = alerts.get("offline_after") if isinstance(alerts, Mapping) else None
    beat = fleet.get("agent_heartbeat", DEFAULT_AGENT_HEARTBEAT)
    if _is_number(bound) and _is_number(beat) and bound < 2 * beat:
        problems.add(
            ("fleet", "alerts", "offline_after"),
            f"must be at least 2 x fleet.agent_heartbeat ({2 * beat:g} s; default "
            f"{OFFLINE_BEATS} x, got {bound:g})",
        )


def _check_voltages(
    values: Mapping[str, Any], given: Mapping[str, Any], where: KeyPath, problems: Problems
) -> None:
    """min_voltage below max_voltage, checked where the block (`given`) sets either of them."""
    if (
        ("min_voltage" in given or "max_voltage" in given)
        and _is_number(values["min_voltage"])
        and _is_number(values["max_voltage"])
        and values["min_voltage"] >= values["max_voltage"]
    ):
        key = "min_voltage" if "min_voltage" in given else "max_voltage"
        problems.add(
            (*where, key),
            f"min_voltage ({show_value(values['min_voltage'])}) must be below "
            f"max_voltage ({show_value(values['max_voltage'])})",
        )


def cross_checks(data: Mapping[str, Any], problems: Problems, base_dir: Path) -> None:
    """Checks across keys and resorts, on the raw data (so they run even when others fail)."""
    fleet = data.get("fleet")
    if isinstance(fleet, Mapping):
        _check_pools(fleet, problems)
        _check_offline_bound(fleet, problems)
    raw_defaults = data.get("defaults")
    defaults = raw_defaults if isinstance(raw_defaults, Mapping) else {}
    scope = {**BUILTIN_DEFAULTS, **defaults}
    _check_voltages(scope, defaults, ("defaults",), problems)
    resorts = data.get("resorts")
    if not isinstance(resorts, list):
        return
    names_seen: dict[str, int] = {}
    ports_seen: dict[tuple[str, str], tuple[str, int]] = {}
    for index, entry in enumerate(resorts):
        if not isinstance(entry, Mapping):
            continue
        here = ("resorts", index)
        merged = {**scope, **{k: v for k, v in entry.items() if v is not None}}
        name = entry.get("name")
        if isinstance(name, str):
            if name in names_seen:
                problems.add(
                    (*here, "name"),
                    f"duplicate resort name {name!r} (first at resorts[{names_seen[name]}], "
                    f"line {problems.line_of(('resorts', names_seen[name], 'name'))})",
                )
            else:
                names_seen[name] = index
        if merged.get("hotels") is None and "hotels" not in entry:
            problems.add((*here, "hotels"), "required key missing (set it here or in defaults)")
        _check_voltages(merged, entry, here, problems)
        host, port, emulate = entry.get("host"), merged.get("serial_port"), merged.get("emulate")
        relative = isinstance(port, str) and port and not os.path.isabs(port) and "://" not in port
        if relative and emulate is False:
            problems.add(
                (*here, "serial_port"),
                f"relative path {port!r} is only allowed with emulate: true "
                "(a real port needs an absolute path such as /dev/serial/by-id/...)",
            )
        if isinstance(host, str) and isinstance(port, str) and port:
            pair = (host.lower(), resolve_port(port, base_dir))
            if pair in ports_seen:
                other, other_index = ports_seen[pair]
                problems.add(
                    (*here, "serial_port"),
                    f"host {host!r} and serial port {port!r} are already used by {other} "
                    f"(resorts[{other_index}])",
                )
            else:
                ports_seen[pair] = (str(name), index)
