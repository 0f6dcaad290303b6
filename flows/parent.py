"""Parent flows: pick a resort, hold its lock, run a device subflow on its queue, return the result.

Flows (names in `resort_common.names.PARENT_FLOWS`): `fleet-activate-hotel`, `fleet-go-home`,
`fleet-move-to-angle`, `fleet-health` and `fleet-reserve` (several steps under one lock);
`flows.maintenance` adds `fleet-recover` and `fleet-set-speed` and `flows.batch` adds
`fleet-batch`. The CLI and `fleet.client` call them in-process (a real, tracked flow run);
`fleet controller` runs them in its own process from the control pool (`fleet.client.controller`)
for schedulers that go through Prefect.

Each motion flow validates its request against the inventory (`flows.requests`: unknown resort
or hotel, angle out of range -> `PlanError`), then runs it with `flows.operations.run_operation`:
select the resort, take its lock (and a fleet-wide move slot when the fleet has a move limit),
dispatch the device run (`flows.dispatch`) and return its result.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from prefect import flow

from fleet.core import locks
from fleet.core.alerts import lock_held_after
from fleet.core.errors import DispatchError, PlanError
from fleet.core.selection import select_resort
from fleet.core.watchdog import parent_heartbeat
from flows.dispatch import dispatch, run_logger
from flows.operations import DEFAULT_LOCK_TIMEOUT, run_operation
from flows.overview import publish_overview
from flows.requests import (
    as_selector,
    load_fleet_inventory,
    make_operation,
    step_args,
    validate_request,
)

if TYPE_CHECKING:
    from fleet.core.inventory import Resort

__all__ = ["activate_hotel", "fleet_health", "go_home", "move_to_angle", "reserve"]


async def _run_motion(
    action: str,
    resort: str | None,
    selector: dict[str, Any] | None,
    inventory: str | None,
    lock_timeout: float,
    reservation: str | None,
    **args: Any,
) -> dict[str, Any]:
    """The body of every motion flow: one operation `action(**args)` on the target resort."""
    inv = load_fleet_inventory(inventory)
    async with parent_heartbeat(inv):
        op = make_operation(action, resort, selector, **args)
        return await run_operation(
            inv, op, step=action, lock_timeout=lock_timeout, reservation=reservation
        )


@flow(name="fleet-activate-hotel", log_prints=False)
async def activate_hotel(
    hotel: str,
    resort: str | None = None,
    selector: dict[str, Any] | None = None,
    inventory: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    reservation: str | None = None,
) -> dict[str, Any]:
    """Turn a resort (named, or chosen by selector) so `hotel` faces the arm; return the result."""
    return await _run_motion(
        "activate_hotel", resort, selector, inventory, lock_timeout, reservation, hotel=hotel
    )


@flow(name="fleet-go-home", log_prints=False)
async def go_home(
    resort: str | None = None,
    selector: dict[str, Any] | None = None,
    inventory: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    reservation: str | None = None,
) -> dict[str, Any]:
    """Turn a resort to its home angle (resort angle 0); return the result."""
    return await _run_motion("go_home", resort, selector, inventory, lock_timeout, reservation)


@flow(name="fleet-move-to-angle", log_prints=False)
async def move_to_angle(
    angle: float,
    resort: str | None = None,
    selector: dict[str, Any] | None = None,
    inventory: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    reservation: str | None = None,
) -> dict[str, Any]:
    """Turn a resort to `angle` degrees (resort frame, 0 <= angle < 360); return the result."""
    return await _run_motion(
        "move_to_angle", resort, selector, inventory, lock_timeout, reservation, angle=angle
    )


@flow(name="fleet-health", log_prints=False)
async def fleet_health(
    resorts: list[str] | None = None,
    inventory: str | None = None,
    timeout: float = 30.0,
) -> dict[str, dict[str, Any]]:
    """Ask every (or each named) active resort for its health, concurrently; no lock is taken.

    Then updates the fleet overview artifact (`fleet.core.overview`) with the fresh readings.

    Returns:
        resort name -> `{"state", "result", "error"}`; offline or inactive resorts get an error
        without a device run.
    """
    from fleet.core.selection import read_statuses, unavailable_reason

    inv = load_fleet_inventory(inventory)
    targets = [inv.resort(name) for name in resorts] if resorts else list(inv.resorts)

    async def one(resort: Resort, statuses: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        reason = unavailable_reason(resort, statuses.get(resort.name))
        if reason is not None and reason != "e-stopped" and not reason.startswith("faulted"):
            return resort.name, {"state": "Skipped", "result": None, "error": reason}
        try:
            result = await dispatch(
                inv, resort, "request-health", {}, step="health", run_timeout=timeout
            )
        except DispatchError as exc:
            return resort.name, {"state": exc.state or "Failed", "result": None, "error": str(exc)}
        return resort.name, {"state": "Completed", "result": result, "error": None}

    async with parent_heartbeat(inv):
        try:
            statuses = await read_statuses(inv)
        except Exception as exc:
            run_logger(__name__).warning("fleet status unreadable: %s", exc)
            statuses = {}
        results = dict(await asyncio.gather(*(one(r, statuses) for r in targets)))
        await publish_overview(inv, results)
        return results


@flow(name="fleet-reserve", log_prints=False)
async def reserve(
    steps: list[dict[str, Any]],
    resort: str | None = None,
    selector: dict[str, Any] | None = None,
    inventory: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> dict[str, Any]:
    """Hold one resort across several steps (e.g. rotate, let the arm pick, go home).

    Args:
        steps: `[{"action": "activate_hotel", "hotel": "B"}, {"action": "go_home"}, ...]`.
        resort: the resort name, or
        selector: `{"labels": [...], "hotel": "B"}` to choose one (once, for all steps).
        inventory: inventory path (default `$FLEET_INVENTORY` or `inventory/demo.yaml`).
        lock_timeout: seconds to wait for the resort's lock.

    Returns:
        `{"resort": name, "results": [device result per step]}`.
    """
    inv = load_fleet_inventory(inventory)
    if not steps:
        raise PlanError("steps: give at least one step")
    async with parent_heartbeat(inv):
        target = await select_resort(inv, resort=resort, selector=as_selector(selector))
        ops = [
            make_operation(str(s.get("action")), target.name, None, **step_args(s, i))
            for i, s in enumerate(steps)
        ]
        for op in ops:
            validate_request(inv, op)
        results: list[dict[str, Any]] = []
        async with locks.resort_lock(
            target.name, timeout=lock_timeout, held_alert_after=lock_held_after(inv)
        ) as lock:
            for index, op in enumerate(ops):
                results.append(
                    await run_operation(
                        inv,
                        op,
                        step=f"{index}-{op.action}",
                        held_locks={target.name: lock},
                        resort=target,
                    )
                )
        return {"resort": target.name, "results": results}
