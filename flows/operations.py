"""The lock-holding operation runner: select an operation's resort, hold its lock, dispatch.

`run_operation` runs one plan operation (validate, select the resort, then `run_locked`);
`run_locked` runs one device subflow under the resort's lock: the one the calling flow holds,
the caller's reservation (a lease id, checked alive first) or a lock taken for the call. The
parent flows (`flows.parent`, `flows.maintenance`, `flows.batch`) are built on these two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fleet.core import locks
from fleet.core.alerts import lock_held_after
from fleet.core.plan import DEVICE_FLOW_OF, Operation
from fleet.core.selection import select_resort
from flows.dispatch import dispatch, read_result, submit_and_finish
from flows.requests import validate_request

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory, Resort

__all__ = ["DEFAULT_LOCK_TIMEOUT", "run_locked", "run_operation"]

DEFAULT_LOCK_TIMEOUT = locks.DEFAULT_LOCK_TIMEOUT


async def run_operation(
    inventory: Inventory,
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
    selector = op.effective_selector()
    if resort is None:
        resort = await select_resort(inventory, resort=op.resort, selector=selector)
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
    inventory: Inventory,
    resort: Resort,
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
        run = await submit_and_finish(
            inventory, resort, device_flow, parameters, step=step, held=lock, info=info
        )
        # the run Completed: its result is read while the lock is given back
        result = asyncio.ensure_future(read_result(run))
    return await result
