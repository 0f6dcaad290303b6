"""Maintenance parent flows: recover a resort after a hardware fault, change its speed.

* `fleet-recover` runs the `reboot-resort` device subflow under the resort's lock: the servo
  reboots (clearing latched hardware errors such as overload or overheating), the agent re-applies
  its settings and reports the health after the reboot. The resort must not be e-stopped (clear
  the stop first: a reboot switches torque back on).
* `fleet-set-speed` runs `set-speed` under the lock: later moves use the new speed (deg/s) and,
  when given, acceleration (deg/s^2). It lasts until the agent restarts; the inventory's values
  are the default. A speed at which a full-turn move would overrun the resort's `move_timeout` is
  refused before anything is queued (`fleet.core.plan.validate_speed`).

Both accept a `reservation` (the lease id of a lock the caller holds, as `fleet-activate-hotel`
does) and refuse a resort that is inactive, offline or drained with `DeviceSelectionError`
before any run is created. A faulted resort is accepted: recovering it is the point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import flow

from fleet.core.errors import DeviceSelectionError
from fleet.core.plan import validate_speed
from fleet.core.selection import read_statuses, unavailable_reason
from fleet.core.watchdog import parent_heartbeat
from flows.operations import DEFAULT_LOCK_TIMEOUT, run_locked
from flows.requests import load_fleet_inventory

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory

__all__ = ["recover", "set_speed"]


async def _run_maintenance(
    inv: Inventory,
    name: str,
    device_flow: str,
    parameters: dict[str, Any],
    *,
    allow_estopped: bool,
    lock_timeout: float,
    reservation: str | None,
) -> dict[str, Any]:
    """Run `device_flow` on the named resort under its lock, if it can take it now.

    A faulted resort is accepted (recovering it is the point); an e-stopped one only when
    `allow_estopped`.
    """
    async with parent_heartbeat(inv):
        resort = inv.resort(name)  # DeviceSelectionError for an unknown name
        statuses = await read_statuses(inv)
        reason = unavailable_reason(resort, statuses.get(resort.name))
        accepted = (
            reason is None
            or reason.startswith("faulted")
            or (reason == "e-stopped" and allow_estopped)
        )
        if not accepted:
            hint = " (clear the stop first: fleet estop-clear)" if reason == "e-stopped" else ""
            raise DeviceSelectionError(f"resort {resort.name} is not available: {reason}{hint}")
        return await run_locked(
            inv,
            resort,
            device_flow,
            parameters,
            step=device_flow,
            lock_timeout=lock_timeout,
            reservation=reservation,
        )


@flow(name="fleet-recover", log_prints=False)
async def recover(
    resort: str,
    inventory: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    reservation: str | None = None,
) -> dict[str, Any]:
    """Reboot a resort's servo under its lock (clears latched hardware errors); return its health.

    Raises:
        DeviceSelectionError: unknown, inactive, offline, drained or e-stopped resort.
        DeviceBusyError: the lock was not free within `lock_timeout`.
        DispatchError: the reboot failed (e.g. the servo did not answer).
    """
    return await _run_maintenance(
        load_fleet_inventory(inventory),
        resort,
        "reboot-resort",
        {},
        allow_estopped=False,
        lock_timeout=lock_timeout,
        reservation=reservation,
    )


@flow(name="fleet-set-speed", log_prints=False)
async def set_speed(
    resort: str,
    speed: float,
    acceleration: float | None = None,
    inventory: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    reservation: str | None = None,
) -> dict[str, Any]:
    """Set a resort's speed (deg/s) and optionally acceleration (deg/s^2) for later moves.

    Raises:
        PlanError: speed or acceleration out of range, or too slow for the move timeout.
        DeviceSelectionError: unknown, inactive, offline or drained resort.
        DeviceBusyError: the lock was not free within `lock_timeout`.
        DispatchError: the servo refused the profile.
    """
    inv = load_fleet_inventory(inventory)
    validate_speed(inv, resort, speed, acceleration)
    return await _run_maintenance(
        inv,
        resort,
        "set-speed",
        {"speed": speed, "acceleration": acceleration},
        allow_estopped=True,
        lock_timeout=lock_timeout,
        reservation=reservation,
    )
