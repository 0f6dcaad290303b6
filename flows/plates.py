"""Plate hand-offs: store a plate in a free room, or take one out, with a person or an arm.

`fleet-store-plate` reserves a free room (`fleet.core.plates`), takes the resort's lock, turns
the room's hotel to the access position and pauses, still holding the lock, until the hand-off is
confirmed or aborted: `fleet plates confirm|abort PLATE` from any shell, the Python API, or the
Prefect UI's resume form of the paused run. Confirm commits the room (`occupied`), abort leaves it
as it was; a timeout, or a failure after the hotel was presented, leaves it `uncertain` for an
operator to resolve. `fleet-retrieve-plate` is the same in reverse. Each change republishes the
resort's occupancy artifact (`fleet.core.plates.occupancy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, cast

from prefect import flow
from prefect.input import RunInput

from fleet.core import locks
from fleet.core.alerts import lock_held_after
from fleet.core.errors import PlateError
from fleet.core.identity import who_am_i
from fleet.core.inventory.fleet_block import HANDOFF_LEASE
from fleet.core.plates import Plate, PlateRegistry, Reservation
from fleet.core.plates.config import open_registry
from fleet.core.plates.occupancy import publish_changed
from fleet.core.selection import select_resort
from fleet.core.watchdog import parent_heartbeat
from flows.dispatch import dispatch
from flows.operations import DEFAULT_LOCK_TIMEOUT
from flows.requests import as_selector, load_fleet_inventory

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory, Resort

__all__ = [
    "DEFAULT_HANDOFF_TIMEOUT",
    "HandoffDecision",
    "retrieve_plate",
    "store_plate",
]

logger = logging.getLogger(__name__)

#: seconds a hand-off waits for its confirmation before the room is left `uncertain`
DEFAULT_HANDOFF_TIMEOUT = 600.0


class HandoffDecision(RunInput):
    """What the person or the arm reports: the plate was put in (taken out), or not."""

    decision: Literal["confirm", "abort"]


@flow(name="fleet-store-plate", log_prints=False)
async def store_plate(
    plate: str,
    resort: str | None = None,
    selector: dict[str, Any] | None = None,
    hotel: str | None = None,
    labware: str | None = None,
    owner: str | None = None,
    timeout: float = DEFAULT_HANDOFF_TIMEOUT,
    inventory: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    reservation: str | None = None,
) -> dict[str, Any]:
    """Store `plate` in a free room of `resort` (or of one chosen by `selector`), optionally in
    `hotel`, and wait up to `timeout` s for the hand-off's confirmation.

    `reservation` is the lease id of the resort's lock the caller already holds (the client's
    `reserve()`): the hand-off then runs under it instead of taking the lock.

    Returns:
        The room as it is after the hand-off (`plate, resort, hotel, room, state`).
    """
    inv = load_fleet_inventory(inventory)
    async with parent_heartbeat(inv):
        target = await select_resort(inv, resort=resort, selector=as_selector(selector))
        hotels = list(target.hotels)
        if hotel is not None:
            if hotel not in hotels:
                raise PlateError(
                    f"hotel: {target.name} has hotels {', '.join(hotels)}, got {hotel!r}"
                )
            hotels = [hotel]
        registry = await open_registry(inv, on_change=publish_changed)
        try:
            held = await registry.reserve_store(
                Plate(plate, labware=labware, owner=owner),
                [(target.name, hotels)],
                who=who_am_i(),
                flow_run_id=_run_id(),
                lease=_lease(inv),
            )
            return await _hand_off(inv, registry, held, timeout, lock_timeout, reservation)
        finally:
            await registry.close()


@flow(name="fleet-retrieve-plate", log_prints=False)
async def retrieve_plate(
    plate: str,
    timeout: float = DEFAULT_HANDOFF_TIMEOUT,
    inventory: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    reservation: str | None = None,
) -> dict[str, Any]:
    """Present the room holding `plate` and wait up to `timeout` s for its removal
    (`reservation` as for `store_plate`).

    Returns:
        The room as it is after the hand-off.
    """
    inv = load_fleet_inventory(inventory)
    async with parent_heartbeat(inv):
        registry = await open_registry(inv, on_change=publish_changed)
        try:
            held = await registry.reserve_retrieve(
                plate, who=who_am_i(), flow_run_id=_run_id(), lease=_lease(inv)
            )
            return await _hand_off(inv, registry, held, timeout, lock_timeout, reservation)
        finally:
            await registry.close()


async def _hand_off(
    inv: Inventory,
    registry: PlateRegistry,
    held: Reservation,
    timeout: float,
    lock_timeout: float,
    reservation: str | None,
) -> dict[str, Any]:
    """Present `held`'s room under the resort's lock, wait for the decision, commit it.

    The room's lease is renewed all along (`fleet.core.plates.leases`): if this process dies,
    the registry ends the hand-off once the lease runs out.
    """
    resort = inv.resort(held.resort)
    presented = False
    who = who_am_i()
    async with _renewing(registry, held, _lease(inv)):
        try:
            async with _resort_held(inv, resort, reservation, lock_timeout) as hold:
                await dispatch(
                    inv,
                    resort,
                    "activate-hotel",
                    {"hotel": held.hotel},
                    step=f"present-{held.kind}",
                    **hold,
                )
                presented = True
                await registry.mark_presented(held)
                answer = await _decision(held, timeout)
        except BaseException as exc:
            from prefect.exceptions import FlowPauseTimeout

            end = registry.interrupt if presented else registry.abort
            room = await end(held, who=who, flow_run_id=_run_id())
            if isinstance(exc, FlowPauseTimeout):
                raise PlateError(
                    f"plate {held.plate}: no confirmation within {timeout:g} s; "
                    f"{room.resort} hotel {room.hotel} room {room.room} is uncertain "
                    "(look, then `fleet plates resolve`)"
                ) from None
            raise
        if answer is not None and answer.decision == "confirm":
            room = await registry.complete(held, who=who, flow_run_id=_run_id())
        else:
            room = await registry.abort(held, who=who, flow_run_id=_run_id())
    return room.to_dict()


@asynccontextmanager
async def _resort_held(
    inv: Inventory, resort: Resort, reservation: str | None, lock_timeout: float
) -> AsyncIterator[dict[str, Any]]:
    """The resort's lock for the hand-off: the caller's (`reservation`, checked alive) or one
    taken here; yields the `dispatch` keyword that names it."""
    if reservation is not None:
        await locks.verify_lease(resort.name, reservation)
        yield {"lease": reservation}
        return
    async with locks.resort_lock(
        resort.name, timeout=lock_timeout, held_alert_after=lock_held_after(inv)
    ) as lock:
        yield {"held": lock}


async def _decision(held: Reservation, timeout: float) -> HandoffDecision | None:
    """Pause this run until someone resumes it with a `HandoffDecision` (or `timeout` s pass)."""
    from prefect.flow_runs import pause_flow_run

    # `pause_flow_run` is sync-compatible: inside a flow's event loop it is a coroutine
    return await cast(
        Awaitable[HandoffDecision | None],
        pause_flow_run(
            wait_for_input=HandoffDecision,
            timeout=max(1, int(timeout)),
            poll_interval=1,
            key=f"handoff-{held.token}",
        ),
    )


@asynccontextmanager
async def _renewing(
    registry: PlateRegistry, held: Reservation, lease: float
) -> AsyncIterator[None]:
    """Renew `held`'s lease every third of `lease` while the body runs."""

    async def renew() -> None:
        while True:
            await asyncio.sleep(lease / 3)
            try:
                alive = await registry.renew(held, lease)
            except Exception as exc:  # the database away for a moment: the next renewal may do
                logger.warning("plate %s: renewing its hand-off failed: %s", held.plate, exc)
                continue
            if not alive:
                logger.error(
                    "plate %s: its hand-off ended without this run (lease expired)", held.plate
                )
                return

    task = asyncio.create_task(renew())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _lease(inv: Inventory) -> float:
    settings = inv.fleet.registry
    return float(settings.handoff_lease) if settings is not None else HANDOFF_LEASE


def _run_id() -> str | None:
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    return str(run_id) if run_id else None
