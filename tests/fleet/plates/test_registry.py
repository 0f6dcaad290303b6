"""fleet.core.plates.registry: hand-offs, their history, and what the database refuses."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from fleet.core.errors import PlateError
from fleet.core.plates import Plate, PlateRegistry
from fleet.core.plates.schema import rooms


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_store_reserves_the_first_free_room_then_confirm_occupies_it(
    registry: PlateRegistry,
) -> None:
    r = run(registry.reserve_store(Plate("P1", labware="96-well"), [("ra", ["B", "A"])], who="t"))
    assert (r.kind, r.resort, r.hotel, r.room) == ("store", "ra", "B", 1)
    assert run(registry.where("P1")).state == "reserved"  # reported while in progress
    room = run(registry.complete(r, who="t", flow_run_id="run-1"))
    assert (room.state, room.plate) == ("occupied", "P1")
    plate = run(registry.plate("P1"))
    assert plate.labware == "96-well" and plate.arrived_at is not None
    actions = [
        (h.action, h.from_state, h.to_state, h.flow_run_id) for h in run(registry.history("P1"))
    ]
    assert actions == [
        ("reserve-store", "free", "reserved", None),
        ("store-confirmed", "reserved", "occupied", "run-1"),
    ]


def test_abort_of_a_store_frees_the_room_and_of_a_retrieve_keeps_the_plate(
    registry: PlateRegistry,
) -> None:
    r = run(registry.reserve_store(Plate("P1"), [("ra", ["A"])], who="t"))
    assert run(registry.abort(r, who="t")).state == "free"
    assert run(registry.where("P1")) is None
    run(
        registry.complete(
            run(registry.reserve_store(Plate("P1"), [("ra", ["A"])], who="t")), who="t"
        )
    )
    out = run(registry.reserve_retrieve("P1", who="t"))
    assert run(registry.abort(out, who="t")).state == "occupied"
    out = run(registry.reserve_retrieve("P1", who="t"))
    room = run(registry.complete(out, who="t"))
    assert (room.state, room.plate) == ("free", None)
    assert run(registry.where("P1")) is None  # left the fleet; its history stays
    assert run(registry.history("P1"))[-1].action == "retrieve-confirmed"


def test_an_interrupted_hand_off_leaves_the_room_uncertain_until_resolved(
    registry: PlateRegistry,
) -> None:
    r = run(registry.reserve_store(Plate("P1"), [("ra", ["A"])], who="t"))
    room = run(registry.interrupt(r, who="t"))
    assert (room.state, room.plate) == ("uncertain", "P1")
    assert run(registry.where("P1")).state == "uncertain"
    with pytest.raises(PlateError, match="no store hand-off of it is in progress"):
        run(registry.complete(r, who="t"))  # the late confirm of a timed-out hand-off
    with pytest.raises(PlateError, match="ra hotel A room 2 is free, not uncertain"):
        run(registry.resolve("ra", "A", 2, occupied_by=None, who="op"))
    room = run(registry.resolve("ra", "A", 1, occupied_by="P1", who="op"))
    assert (room.state, room.plate) == ("occupied", "P1")
    assert run(registry.history("P1"))[-1].action == "resolved-occupied"


def test_bad_requests_change_nothing(registry: PlateRegistry) -> None:
    before = run(registry.rooms())
    with pytest.raises(PlateError, match="plate id 'bad id'"):
        run(registry.reserve_store(Plate("bad id"), [("ra", ["A"])], who="t"))
    with pytest.raises(PlateError, match="plate P9 is not in the fleet"):
        run(registry.reserve_retrieve("P9", who="t"))
    for n in range(3):
        run(
            registry.complete(
                run(registry.reserve_store(Plate(f"F{n}"), [("ra", ["A"])], who="t")), who="t"
            )
        )
    with pytest.raises(PlateError, match="no free room in ra hotel A"):
        run(registry.reserve_store(Plate("P1"), [("ra", ["A"])], who="t"))
    with pytest.raises(PlateError, match=r"plate F0 is already in ra hotel A room 1 \(occupied\)"):
        run(registry.reserve_store(Plate("F0"), [("rb", ["A"])], who="t"))
    with pytest.raises(PlateError, match="no room ra hotel C room 1"):
        run(registry.resolve("ra", "C", 1, occupied_by=None, who="op"))
    after = {(r.resort, r.hotel, r.room): r for r in run(registry.rooms())}
    changed = [r for r in before if after[(r.resort, r.hotel, r.room)].state != r.state]
    assert {(r.hotel, r.room) for r in changed} == {("A", 1), ("A", 2), ("A", 3)}
    assert run(registry.where("P1")) is None


def test_the_database_keeps_a_plate_in_one_room(registry: PlateRegistry) -> None:
    run(
        registry.complete(
            run(registry.reserve_store(Plate("P1"), [("ra", ["A"])], who="t")), who="t"
        )
    )

    async def second_room() -> None:
        async with registry.engine.begin() as c:
            await c.execute(
                update(rooms)
                .where(rooms.c.resort == "rb", rooms.c.hotel == "A", rooms.c.room == 1)
                .values(state="occupied", plate_id="P1")
            )

    with pytest.raises(IntegrityError):
        run(second_room())


def test_concurrent_stores_never_share_a_room(registry: PlateRegistry) -> None:
    async def store_all() -> list[Any]:
        return await asyncio.gather(
            *(
                registry.reserve_store(
                    Plate(f"C{n}"), [("ra", ["A", "B"]), ("rb", ["A"])], who=f"s{n}"
                )
                for n in range(9)
            )
        )

    reservations = run(store_all())
    places = {(r.resort, r.hotel, r.room) for r in reservations}
    assert len(places) == 9
    with pytest.raises(PlateError, match="no free room"):
        run(registry.reserve_store(Plate("C9"), [("ra", ["A", "B"]), ("rb", ["A"])], who="t"))


def test_concurrent_stores_of_one_plate_put_it_in_one_room(registry: PlateRegistry) -> None:
    async def store_twice(plate: str) -> list[Any]:
        return await asyncio.gather(
            *(
                registry.reserve_store(Plate(plate), [(resort, ["A"])], who=resort)
                for resort in ("ra", "rb")
            ),
            return_exceptions=True,
        )

    for plate in ("NEW", "NEW"):  # a plate never seen, then one the registry knows
        outcomes = run(store_twice(plate))
        held = [o for o in outcomes if not isinstance(o, BaseException)]
        refused = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(held) == 1 and len(refused) == 1, outcomes
        assert isinstance(refused[0], PlateError), refused
        assert "plate NEW is already in" in str(refused[0])
        assert run(registry.where("NEW")).resort == held[0].resort
        run(registry.abort(held[0], who="t"))


def test_a_physical_count_replaces_the_occupancy_all_or_nothing(registry: PlateRegistry) -> None:
    run(
        registry.complete(
            run(registry.reserve_store(Plate("OLD"), [("ra", ["A"])], who="t")), who="t"
        )
    )
    with pytest.raises(PlateError, match="plate N1 is listed twice"):
        run(
            registry.replace_occupancy(
                [("ra", "B", 1, Plate("N1")), ("rb", "B", 1, Plate("N1"))], who="op"
            )
        )
    with pytest.raises(PlateError, match="no room rb hotel Z room 1"):
        run(registry.replace_occupancy([("rb", "Z", 1, Plate("N2"))], who="op"))
    assert run(registry.where("OLD")).state == "occupied"  # nothing changed
    assert run(registry.replace_occupancy([("rb", "B", 2, Plate("N1"))], who="op")) == 1
    assert run(registry.where("OLD")) is None
    assert (run(registry.where("N1")).resort, run(registry.where("N1")).room) == ("rb", 2)
    assert run(registry.history("OLD"))[-1].action == "counted-empty"


def test_the_migrations_build_the_schema_the_code_uses(registry: PlateRegistry) -> None:
    """Alembic finds no difference between the migrated database and `schema.metadata`."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from fleet.core.plates.schema import metadata

    async def diff() -> list[Any]:
        async with registry.engine.connect() as c:
            return await c.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )

    # the version table is Alembic's own; everything else must match
    differences = [d for d in run(diff()) if "plate_registry_version" not in repr(d)]
    assert differences == []


def test_registries_opened_at_once_on_a_new_database_add_each_room_once(tmp_path: Any) -> None:
    """Schedulers starting together each open the registry, and each open adds missing rooms."""
    from fleet.core.plates.database import upgrade

    layout = [("ra", ("A", "B", "C", "D"), 20)]

    async def race(url: str) -> list[int]:
        opened = [PlateRegistry(url) for _ in range(4)]
        await upgrade(opened[0].engine)
        try:
            return list(await asyncio.gather(*(r.sync_rooms(layout) for r in opened)))
        finally:
            for r in opened:
                await r.close()

    for n in range(5):
        url = f"sqlite+aiosqlite:///{tmp_path / f'fresh{n}.db'}"
        assert sum(run(race(url))) == 80  # each room added by exactly one of them
        check = PlateRegistry(url)
        assert len(run(check.rooms())) == 80
        run(check.close())
