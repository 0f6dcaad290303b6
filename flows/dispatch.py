"""The dispatch of one device run: create it on the resort's queue, wait for it, read its result.

`dispatch` runs under a lock its caller holds (`flows.operations`):

1. `run_deployment(device deployment, timeout=0, idempotency_key="<parent run>:<step>:<resort>")`
   (keys are unique per *flow*, so the resort is part of the key), inside a fleet-wide move slot
   when the fleet has a move limit;
2. wait event-driven (`flows.waiting.wait_final`; a blocking `run_deployment` polls every 5 s),
   through a server restart: the run goes on at the agent, so the lock is kept until the run's
   own timeout;
3. a child that is not Completed raises `DispatchError` (`run_deployment` itself never raises);
   a Crashed or unfinished child may still be moving (a Wi-Fi drop marks a live run Crashed), so
   the lock is released only after the resort's own status says idle; otherwise it is left to
   expire with its lease;
4. return the device subflow's result (`flows.results.aread_device_result`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger

from fleet.core import locks
from fleet.core.errors import DispatchError
from flows.waiting import retry_transient, wait_final
from resort_common import names

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory, Resort

__all__ = [
    "DeviceRun",
    "await_final",
    "check_completed",
    "dispatch",
    "finish",
    "read_result",
    "run_logger",
    "submit",
    "submit_and_finish",
    "wait_until_idle",
]

_log = logging.getLogger(__name__)

#: seconds a device run may wait for its agent to pick it up, on top of the resort's move_timeout
PICKUP_MARGIN = 60.0
#: seconds, on top of the resort's move_timeout, to wait for a crashed run's resort to be idle
IDLE_MARGIN = 30.0
IDLE_POLL = 0.5
#: seconds to keep trying to read a completed run's result from a server that is away
RESULT_READ_WINDOW = 60.0


def run_logger(name: str) -> Any:
    """The flow run's logger inside a flow run, else the module logger `name`."""
    try:
        return get_run_logger()
    except Exception:
        return logging.getLogger(name)


# --- the resort's own word: idle? ---------------------------------------------------------------


async def _read_resort_status(inventory: Inventory, resort: str) -> Any:
    from fleet.core.selection import read_statuses

    return (await read_statuses(inventory)).get(resort)


async def wait_until_idle(
    inventory: Inventory, resort: str, child_run_id: str | None, timeout: float
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
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    return str(run_id) if run_id else f"adhoc-{uuid.uuid4()}"


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


@dataclass
class DeviceRun:
    """A device run created on a resort's queue (by `submit`), not yet waited for."""

    resort: Resort
    device_flow: str
    id: str
    name: str
    timeout: float
    held: locks.HeldLock | None


async def submit(
    resort: Resort,
    device_flow: str,
    parameters: Mapping[str, Any],
    *,
    step: str,
    held: locks.HeldLock | None = None,
    lease: str | None = None,
    run_timeout: float | None = None,
    info: dict[str, Any] | None = None,
) -> DeviceRun:
    """Create the device run `device_flow` on `resort`'s queue under a held lock (see `dispatch`).

    Raises:
        DeviceBusyError: `held` was lost (its lease could not be renewed).
    """
    log = run_logger(__name__)
    if held is not None:
        held.check()
    timeout = run_timeout if run_timeout is not None else resort.move_timeout + PICKUP_MARGIN
    key = f"{_parent_run_id()}:{step}:{resort.name}"
    deployment = names.device_deployment_name(device_flow, resort)
    parameters = dict(parameters)
    if device_flow in names.LEASED_FLOWS:
        parameters["lease"] = str(held.lease_id) if held is not None else lease
    began = time.monotonic()
    child = await _create_child(deployment, parameters, key)
    _log.debug("%s: run created in %.3f s", deployment, time.monotonic() - began)
    child_id = str(child.id)
    if info is not None:
        info.update(flow_run_id=child_id, resort=resort.name)
    log.info("dispatched %s as run %s (%s)", deployment, child.name, child_id)
    return DeviceRun(resort, device_flow, child_id, child.name, timeout, held)


async def await_final(inventory: Inventory, run: DeviceRun) -> Any:
    """Wait for `run` to end (its timeout counts from this call); return the final flow run.

    A run that never started within its timeout is cancelled.

    Raises:
        DispatchError: no final state within the timeout (after settling a run that may move).
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import FlowRunWaitTimeout

    began = time.monotonic()
    try:
        child = await wait_final(run.id, run.timeout + 1)
    except FlowRunWaitTimeout:
        async with get_client() as client:
            await _stop_unstarted(client, uuid.UUID(run.id))
            child = await client.read_flow_run(uuid.UUID(run.id))
        if child.state is None or not child.state.is_final():  # final: reported as such
            await _settle(inventory, run.resort, run.id, run.held, run.device_flow)
            raise DispatchError(
                f"{run.device_flow} on {run.resort.name}: no final state after "
                f"{run.timeout:.0f} s (run {run.id} is "
                f"{child.state.name if child.state else 'unknown'})",
                flow_run_id=run.id,
                state=child.state.name if child.state else None,
            ) from None
    _log.debug("run %s final after %.3f s", run.id, time.monotonic() - began)
    return child


async def check_completed(inventory: Inventory, run: DeviceRun, child: Any) -> None:
    """Return when the final `child` is Completed; else settle a run that may move and raise.

    Raises:
        DispatchError: the run did not complete (carries its id and state).
    """
    state = child.state
    if state is not None and state.is_completed():
        return
    state_name = state.name if state else "unknown"
    if state is None or state.is_crashed():
        await _settle(inventory, run.resort, run.id, run.held, run.device_flow)
    message = (state.message or "").strip() if state else ""
    raise DispatchError(
        f"{run.device_flow} on {run.resort.name} ended {state_name}"
        + (f": {message}" if message else "")
        + f" (run {run.id})",
        flow_run_id=run.id,
        state=state_name,
    )


async def read_result(run: DeviceRun) -> dict[str, Any]:
    """The device result of a Completed run (the server may be away for a while)."""
    return await retry_transient(lambda: _read_result(run.id), RESULT_READ_WINDOW)


async def finish(inventory: Inventory, run: DeviceRun) -> None:
    """Wait for `run` and return once it Completed (inside the caller's lock and move slot).

    Raises:
        DispatchError: it did not complete in time, or ended otherwise.
    """
    child = await await_final(inventory, run)
    await check_completed(inventory, run, child)


async def dispatch(
    inventory: Inventory,
    resort: Resort,
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
    run = await submit_and_finish(
        inventory,
        resort,
        device_flow,
        parameters,
        step=step,
        held=held,
        lease=lease,
        run_timeout=run_timeout,
        info=info,
    )
    return await read_result(run)


async def submit_and_finish(
    inventory: Inventory,
    resort: Resort,
    device_flow: str,
    parameters: Mapping[str, Any],
    **how: Any,
) -> DeviceRun:
    """`submit` then `finish`, inside a fleet-wide move slot for a motion (`dispatch`'s first
    part: the result is left to read, e.g. while the caller releases its lock)."""
    async with locks.fleet_move_slot(inventory) if device_flow in names.MOTION_FLOWS else _null():
        run = await submit(resort, device_flow, parameters, **how)
        await finish(inventory, run)
    return run


class _null:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


async def _settle(
    inventory: Inventory,
    resort: Resort,
    child_id: str,
    held: locks.HeldLock | None,
    device_flow: str,
) -> None:
    """After a crash or timeout: keep the lock until the resort says it is idle."""
    if device_flow not in names.MOTION_FLOWS:
        return
    bound = resort.move_timeout + IDLE_MARGIN
    if await wait_until_idle(inventory, resort.name, child_id, bound):
        return
    if held is not None:
        locks.abandon(held)
