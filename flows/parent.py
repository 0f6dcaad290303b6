"""Parent flows: pick a resort, hold its lock, run a device subflow on its queue, return the result.

Flows (names in `resort_common.names.PARENT_FLOWS`): `fleet-activate-hotel`, `fleet-go-home`,
`fleet-move-to-angle`, `fleet-health` and `fleet-reserve` (several steps under one lock);
`flows.maintenance` adds `fleet-recover` and `fleet-set-speed` on top of `run_locked`. The CLI
and `fleet.client` call them in-process (a real, tracked flow run); `fleet controller` serves them
from the control pool for schedulers that go through Prefect.

One operation (`run_operation`):

1. validate against the inventory (unknown resort or hotel, angle out of range -> `PlanError`);
2. select the resort (`fleet.core.selection`), take its lock (`fleet.core.locks`) and, when the
fleet has a
   move limit, a fleet-wide slot;
3. `run_deployment(device deployment, timeout=0, idempotency_key="<parent run>:<step>:<resort>")`
   (keys are unique per *flow*, so the resort is part of the key), then wait event-driven
   (`flows.waiting.wait_final`: a blocking `run_deployment` polls every 5 s), through a server
   restart: the run goes on at the agent, so the lock is kept until the run's own timeout;
4. a child that is not Completed raises `DispatchError` (`run_deployment` itself never raises);
   a Crashed or unfinished child may still be moving (a Wi-Fi drop marks a live run Crashed), so
   the lock is released only after the resort's own status says idle; otherwise it is left to
   expire with its lease;
5. return the device subflow's result (`flows.results.read_device_result`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

from prefect import flow, get_run_logger

from fleet.core import locks
from fleet.core.alerts import lock_held_after
from fleet.core.errors import DispatchError, PlanError
from fleet.core.plan import DEVICE_FLOW_OF, Operation, validate_operation
from fleet.core.selection import Selector, select_resort
from fleet.core.watchdog import parent_heartbeat
from flows.waiting import retry_transient, wait_final
from resort_common import names

__all__ = [
    "activate_hotel",
    "dispatch",
    "fleet_health",
    "go_home",
    "load_fleet_inventory",
    "move_to_angle",
    "reserve",
    "resolve_inventory_path",
    "run_locked",
    "run_operation",
    "validate_request",
    "wait_until_idle",
]

_log = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT = locks.DEFAULT_LOCK_TIMEOUT
#: seconds a device run may wait for its agent to pick it up, on top of the resort's move_timeout
PICKUP_MARGIN = 60.0
#: seconds, on top of the resort's move_timeout, to wait for a crashed run's resort to be idle
IDLE_MARGIN = 30.0
IDLE_POLL = 0.5
#: seconds to keep trying to read a completed run's result from a server that is away
RESULT_READ_WINDOW = 60.0


def _logger() -> Any:
    try:
        return get_run_logger()
    except Exception:
        return _log


def resolve_inventory_path(path: str | os.PathLike[str] | None = None) -> str:
    """`path`, else `$FLEET_INVENTORY`, else `inventory/demo.yaml` (`fleet.core.inventory`)."""
    from fleet.core.inventory import inventory_path

    return str(inventory_path(path))


def load_fleet_inventory(path: str | os.PathLike[str] | None = None) -> Any:
    """Load the inventory named by `resolve_inventory_path(path)` (raises InventoryError)."""
    from fleet.core.inventory import load_inventory

    return load_inventory(resolve_inventory_path(path))


def _selector(value: Selector | Mapping[str, Any] | None) -> Selector | None:
    if value is None or isinstance(value, Selector):
        return value
    return Selector.model_validate(dict(value))


def _operation(action: str, resort: str | None, selector: Any, **args: Any) -> Operation:
    from pydantic import ValidationError

    try:
        return Operation(resort=resort, selector=_selector(selector), action=action, **args)
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or action}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise PlanError(lines) from None


def validate_request(inventory: Any, op: Operation) -> None:
    """Raise PlanError when `op` cannot run on this inventory (nothing is queued)."""
    problems = validate_operation(inventory, op)
    if problems:
        raise PlanError(problems)


# --- the resort's own word: idle? ---------------------------------------------------------------


async def _read_resort_status(inventory: Any, resort: str) -> Any:
    from fleet.core.selection import read_statuses

    return (await read_statuses(inventory)).get(resort)


async def wait_until_idle(
    inventory: Any, resort: str, child_run_id: str | None, timeout: float
) -> bool:
    """Wait until the resort's agent reports it online, not moving and not running `child`.

    Returns:
        True when idle was confirmed within `timeout` seconds, else False.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = await _read_resort_status(inventory, resort)
        except Exception as exc:  # no status yet / server hiccup: keep asking until the bound
            _log.debug("status of %s unreadable: %s", resort, exc)
            status = None
        if status is not None and status.online and not status.moving:
            current = getattr(status, "current_run", None)
            if current is None or (child_run_id is not None and str(current) != child_run_id):
                return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(IDLE_POLL)


# --- dispatch of one device subflow -------------------------------------------------------------


def _parent_run_id() -> str:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is not None and ctx.flow_run is not None:
        return str(ctx.flow_run.id)
    return f"adhoc-{uuid.uuid4()}"


async def _read_result(flow_run_id: str) -> Any:
    from flows.results import aread_device_result

    return await aread_device_result(flow_run_id)


async def _stop_unstarted(client: Any, flow_run_id: Any) -> None:
    """Cancel a child that never started, so it cannot run later without the lock."""
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled, Cancelling

    run = await client.read_flow_run(flow_run_id)
    if run.state is None or run.state.is_final():
        return
    if run.state.type in (StateType.SCHEDULED, StateType.PENDING):
        await client.set_flow_run_state(
            flow_run_id, Cancelled(message="parent gave up"), force=True
        )
    else:
        await client.set_flow_run_state(flow_run_id, Cancelling(message="parent gave up"))


#: seconds to keep re-trying the creation of a device run on an overloaded server
CREATE_RETRY_WINDOW = 60.0


async def _create_child(deployment: str, parameters: dict[str, Any], key: str) -> Any:
    """`arun_deployment(..., timeout=0)`, retried while the server is overloaded or away.

    Prefect's client gives up after a few retries of a 503 (SQLite lock conflicts under many
    parents); the idempotency key makes a repeat return the run a lost answer already created,
    so re-trying for `CREATE_RETRY_WINDOW` seconds is safe.
    """
    from prefect.deployments import arun_deployment

    return await retry_transient(
        lambda: arun_deployment(deployment, parameters=parameters, timeout=0, idempotency_key=key),
        CREATE_RETRY_WINDOW,
        first=0.2,
        what=f"creating {deployment}",
    )


async def dispatch(
    inventory: Any,
    resort: Any,
    device_flow: str,
    parameters: Mapping[str, Any],
    *,
    step: str,
    held: locks.HeldLock | None = None,
    lease: str | None = None,
    run_timeout: float | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run `device_flow` on `resort` while its lock is held; return the device result.

    Motion and maintenance subflows (`names.LEASED_FLOWS`) get the lock's lease id as their
    `lease` parameter: the agent checks it is live and the resort's holder before the motor sees
    a write.

    Args:
        inventory: the fleet inventory.
        resort: the target resort (inventory `Resort`).
        device_flow: a device subflow name (`activate-hotel`, ...).
        parameters: the subflow's parameters.
        step: the step name in the idempotency key `<parent run>:<step>:<resort>`.
        held: the resort's held lock (checked before dispatch; abandoned if the resort cannot be
            confirmed idle after a crash).
        lease: the lease id of a lock the caller holds (a reservation), when `held` is None.
        run_timeout: seconds to wait for the child (default move_timeout + PICKUP_MARGIN).
        info: filled with `flow_run_id` and `resort` of the child run.

    Raises:
        DispatchError: the child run did not complete (carries its id and state).
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import FlowRunWaitTimeout

    log = _logger()
    if held is not None:
        held.check()
    timeout = run_timeout if run_timeout is not None else resort.move_timeout + PICKUP_MARGIN
    key = f"{_parent_run_id()}:{step}:{resort.name}"
    deployment = names.device_deployment_name(device_flow, resort)
    parameters = dict(parameters)
    if device_flow in names.LEASED_FLOWS:
        parameters["lease"] = str(held.lease_id) if held is not None else lease
    async with locks.fleet_move_slot(inventory) if device_flow in names.MOTION_FLOWS else _null():
        began = time.monotonic()
        child = await _create_child(deployment, parameters, key)
        _log.debug("%s: run created in %.3f s", deployment, time.monotonic() - began)
        child_id = str(child.id)
        if info is not None:
            info.update(flow_run_id=child_id, resort=resort.name)
        log.info("dispatched %s as run %s (%s)", deployment, child.name, child_id)
        try:
            child = await wait_final(child.id, timeout + 1)
        except FlowRunWaitTimeout:
            async with get_client() as client:
                await _stop_unstarted(client, child.id)
                child = await client.read_flow_run(child.id)
            await _settle(inventory, resort, child_id, held, device_flow)
            raise DispatchError(
                f"{device_flow} on {resort.name}: no final state after {timeout:.0f} s "
                f"(run {child_id} is {child.state.name if child.state else 'unknown'})",
                flow_run_id=child_id,
                state=child.state.name if child.state else None,
            ) from None
    _log.debug("%s: run %s final after %.3f s", deployment, child_id, time.monotonic() - began)
    state = child.state
    if state is not None and state.is_completed():
        return await retry_transient(lambda: _read_result(child_id), RESULT_READ_WINDOW)
    state_name = state.name if state else "unknown"
    if state is None or state.is_crashed():
        await _settle(inventory, resort, child_id, held, device_flow)
    message = (state.message or "").strip() if state else ""
    raise DispatchError(
        f"{device_flow} on {resort.name} ended {state_name}"
        + (f": {message}" if message else "")
        + f" (run {child_id})",
        flow_run_id=child_id,
        state=state_name,
    )


class _null:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


async def _settle(
    inventory: Any, resort: Any, child_id: str, held: locks.HeldLock | None, device_flow: str
) -> None:
    """After a crash or timeout: keep the lock until the resort says it is idle."""
    if device_flow not in names.MOTION_FLOWS:
        return
    bound = resort.move_timeout + IDLE_MARGIN
    if await wait_until_idle(inventory, resort.name, child_id, bound):
        return
    if held is not None:
        locks.abandon(held)


# --- one operation: validate, select, lock, dispatch ------------------------------------------


async def run_operation(
    inventory: Any,
    op: Operation,
    *,
    step: str,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    reservation: str | None = None,
    held_locks: Mapping[str, locks.HeldLock] | None = None,
    resort: Any = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one plan operation: select its resort, hold the lock, dispatch, return the result.

    Args:
        inventory: the fleet inventory.
        op: the operation (already validated by the caller, validated again here).
        step: step name for the idempotency key.
        lock_timeout: seconds to wait for the resort's lock.
        reservation: the lease id of a lock the caller already holds on `op.resort`.
        held_locks: resort name -> lock held by this flow (e.g. `fleet-reserve`).
        resort: the already selected target (skips selection).
        info: filled with `flow_run_id` and `resort` of the device run.

    Raises:
        PlanError, DeviceSelectionError, DeviceBusyError, DispatchError.
    """
    validate_request(inventory, op)
    if resort is None:
        resort = await select_resort(inventory, resort=op.resort, selector=op.effective_selector())
    return await run_locked(
        inventory,
        resort,
        DEVICE_FLOW_OF[op.action],
        op.parameters(),
        step=step,
        lock_timeout=lock_timeout,
        reservation=reservation,
        held=(held_locks or {}).get(resort.name),
        info=info,
    )


async def run_locked(
    inventory: Any,
    resort: Any,
    device_flow: str,
    parameters: Mapping[str, Any],
    *,
    step: str,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    reservation: str | None = None,
    held: locks.HeldLock | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run `device_flow` on `resort` under its lock: the one held by this flow (`held`), the
    caller's reservation (lease id, checked alive first) or the lock taken here for the call.

    Raises:
        DeviceBusyError: the lock was not free within `lock_timeout`.
        LeaseError: the reservation's lease is gone or no longer holds the lock.
        DispatchError: the device run did not complete.
    """
    if held is not None:
        return await dispatch(
            inventory, resort, device_flow, parameters, step=step, held=held, info=info
        )
    if reservation is not None:
        await locks.verify_lease(resort.name, reservation)
        return await dispatch(
            inventory, resort, device_flow, parameters, step=step, lease=reservation, info=info
        )
    async with locks.resort_lock(
        resort.name, timeout=lock_timeout, held_alert_after=lock_held_after(inventory)
    ) as lock:
        return await dispatch(
            inventory, resort, device_flow, parameters, step=step, held=lock, info=info
        )


# --- parent flows -------------------------------------------------------------------------------


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
    inv = load_fleet_inventory(inventory)
    async with parent_heartbeat(inv):
        op = _operation("activate_hotel", resort, selector, hotel=hotel)
        return await run_operation(
            inv, op, step="activate_hotel", lock_timeout=lock_timeout, reservation=reservation
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
    inv = load_fleet_inventory(inventory)
    async with parent_heartbeat(inv):
        op = _operation("go_home", resort, selector)
        return await run_operation(
            inv, op, step="go_home", lock_timeout=lock_timeout, reservation=reservation
        )


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
    inv = load_fleet_inventory(inventory)
    async with parent_heartbeat(inv):
        op = _operation("move_to_angle", resort, selector, angle=angle)
        return await run_operation(
            inv, op, step="move_to_angle", lock_timeout=lock_timeout, reservation=reservation
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

    async def one(resort: Any, statuses: dict[str, Any]) -> tuple[str, dict[str, Any]]:
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
            _logger().warning("fleet status unreadable: %s", exc)
            statuses = {}
        results = dict(await asyncio.gather(*(one(r, statuses) for r in targets)))
        await _publish_overview(inv, results)
        return results


#: seconds the health run may spend updating the fleet overview artifact
OVERVIEW_TIMEOUT = 20.0


async def _publish_overview(inventory: Any, results: Mapping[str, Mapping[str, Any]]) -> None:
    """Update the fleet overview artifact with the fresh readings; a failure only warns."""
    from fleet.core.overview import apublish_overview

    health = {
        name: r["result"]
        for name, r in results.items()
        if r.get("state") == "Completed" and isinstance(r.get("result"), Mapping)
    }
    try:
        await asyncio.wait_for(apublish_overview(inventory, health=health), OVERVIEW_TIMEOUT)
    except Exception as exc:
        _logger().warning("fleet overview not updated: %r", exc)


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
        target = await select_resort(inv, resort=resort, selector=_selector(selector))
        ops = [
            _operation(str(s.get("action")), target.name, None, **_step_args(s, i))
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


def _step_args(step: Mapping[str, Any], index: int) -> dict[str, Any]:
    extra = set(step) - {"action", "hotel", "angle"}
    if extra:
        raise PlanError(f"steps[{index}]: unknown key(s) {', '.join(sorted(extra))}")
    return {k: step[k] for k in ("hotel", "angle") if k in step}
