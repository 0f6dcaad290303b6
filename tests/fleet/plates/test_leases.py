"""fleet.core.plates.leases: a hand-off whose waiter stopped renewing its lease is ended.

Time passing is simulated by moving a reservation's `lease_until` into the past, as the waiter's
silence would.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
from sqlalchemy import update

from fleet.core.errors import PlateError
from fleet.core.plates import Plate, PlateRegistry, Reservation
from fleet.core.plates.rows import room_key
from fleet.core.plates.schema import rooms


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def lapse(registry: PlateRegistry, held: Reservation) -> None:
    """The waiter fell silent: its lease ended a second ago."""
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)

    async def write() -> None:
        async with registry.engine.begin() as c:
            await c.execute(update(rooms).where(room_key(held)).values(lease_until=past))

    run(write())


def stored(registry: PlateRegistry, plate: str) -> None:
    held = run(registry.reserve_store(Plate(plate), [("ra", ["A"])], who="t"))
    run(registry.complete(held, who="t"))


@pytest.mark.parametrize(
    ("kind", "presented", "state", "plate"),
    [
        ("store", False, "free", None),  # the hotel never turned: nothing can have happened
        ("store", True, "uncertain", "P1"),
        ("retrieve", False, "occupied", "P1"),
        ("retrieve", True, "uncertain", "P1"),
    ],
)
def test_a_silent_waiter_ends_its_hand_off_by_whether_the_room_was_presented(
    registry: PlateRegistry, kind: str, presented: bool, state: str, plate: str | None
) -> None:
    if kind == "store":
        held = run(registry.reserve_store(Plate("P1"), [("ra", ["A"])], who="t", flow_run_id="r1"))
    else:
        stored(registry, "P1")
        held = run(registry.reserve_retrieve("P1", who="t", flow_run_id="r1"))
    if presented:
        assert run(registry.mark_presented(held))
    assert run(registry.where("P1")).state == "reserved"  # the lease still runs
    lapse(registry, held)
    room = run(registry.rooms(resort="ra"))[0]  # any query notices
    assert (room.state, room.plate) == (state, plate)
    assert room.handoff == (kind if state == "uncertain" else None)
    last = run(registry.history("P1"))[-1]
    assert (last.action, last.from_state, last.to_state, last.flow_run_id, last.who) == (
        f"{kind}-waiter-lost",
        "reserved",
        state,
        "r1",
        "plate registry",
    )
    with pytest.raises(PlateError, match=f"no {kind} hand-off of it is in progress"):
        run(registry.complete(held, who="t"))  # the waiter, back too late, cannot commit
    assert not run(registry.renew(held, 60))


def test_a_renewed_lease_keeps_the_hand_off_and_each_operation_notices_an_expired_one(
    registry: PlateRegistry,
) -> None:
    held = run(registry.reserve_store(Plate("P1"), [("ra", ["A"])], who="t"))
    lapse(registry, held)
    assert run(registry.renew(held, 60))  # renewed before anyone looked: still its hand-off
    assert run(registry.handoff_run("P1")) is not None
    run(registry.mark_presented(held))
    lapse(registry, held)
    # a store elsewhere first ends the dead hand-off, so the uncertain room is not taken
    other = run(registry.reserve_store(Plate("P2"), [("ra", ["A"])], who="t"))
    assert other.room == 2
    assert run(registry.where("P1")).state == "uncertain"
    assert run(registry.handoff_run("P1")) is None
    room = run(registry.resolve("ra", "A", 1, occupied_by="P1", who="operator"))
    assert (room.state, room.plate, room.handoff) == ("occupied", "P1", None)


def test_a_live_hand_off_is_never_expired(registry: PlateRegistry) -> None:
    held = run(registry.reserve_store(Plate("P1"), [("ra", ["A"])], who="t", lease=3600))
    assert run(registry.expire_handoffs()) == []
    assert run(registry.where("P1")).state == "reserved"
    assert run(registry.complete(held, who="t")).state == "occupied"


def test_the_default_hand_off_lease_is_the_resort_locks_lease() -> None:
    from fleet.core.inventory.fleet_block import HANDOFF_LEASE, RegistrySettings
    from fleet.core.locks.lease import DEFAULT_LEASE_DURATION

    assert HANDOFF_LEASE == DEFAULT_LEASE_DURATION == RegistrySettings().handoff_lease
