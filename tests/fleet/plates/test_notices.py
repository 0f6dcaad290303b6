"""fleet.core.plates.notices: every committed change tells `on_change` which resorts changed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fleet.core.errors import PlateError
from fleet.core.plates import Plate, PlateRegistry
from fleet.core.plates.occupancy import occupancy_table


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_each_change_is_told_once_committed_and_a_refused_one_is_not(
    registry: PlateRegistry,
) -> None:
    told: list[tuple[list[str], list[str]]] = []

    async def on_change(reg: PlateRegistry, resorts: list[str]) -> None:
        # committed first: the hook sees the change it is told about
        told.append((resorts, [r.state for r in await reg.rooms(resort=resorts[0])][:1]))

    registry.on_change = on_change
    held = run(registry.reserve_store(Plate("P1"), [("rb", ["A"])], who="t"))
    run(registry.complete(held, who="t"))
    with pytest.raises(PlateError):
        run(registry.reserve_store(Plate("P1"), [("ra", ["A"])], who="t"))  # already stored
    out = run(registry.reserve_retrieve("P1", who="t"))
    run(registry.interrupt(out, who="t"))
    run(registry.resolve("rb", "A", 1, occupied_by=None, who="operator"))
    assert told == [
        (["rb"], ["reserved"]),
        (["rb"], ["occupied"]),
        (["rb"], ["reserved"]),
        (["rb"], ["uncertain"]),
        (["rb"], ["free"]),
    ]
    run(registry.replace_occupancy([("ra", "B", 2, Plate("P9"))], who="count"))
    assert told[-1][0] == ["ra", "rb"]


def test_a_failing_hook_never_fails_or_undoes_the_change(registry: PlateRegistry) -> None:
    async def broken(reg: PlateRegistry, resorts: list[str]) -> None:
        raise RuntimeError("server away")

    registry.on_change = broken
    held = run(registry.reserve_store(Plate("P1"), [("ra", ["A"])], who="t"))
    assert run(registry.complete(held, who="t")).state == "occupied"
    assert run(registry.where("P1")).state == "occupied"


def test_the_occupancy_table_has_a_row_per_room_and_a_column_per_hotel(
    registry: PlateRegistry,
) -> None:
    run(registry.complete(run(registry.reserve_store(Plate("P1"), [("ra", ["B"])], who="t")),
                          who="t"))  # fmt: skip
    run(registry.reserve_store(Plate("P2"), [("ra", ["B"])], who="t"))
    held = run(registry.reserve_store(Plate("P3"), [("ra", ["A"])], who="t"))
    run(registry.interrupt(held, who="t"))
    table = occupancy_table(run(registry.rooms(resort="ra")))
    assert table == [
        {"room": "1", "A": "? P3", "B": "P1"},
        {"room": "2", "A": "", "B": "P2 (store)"},
        {"room": "3", "A": "", "B": ""},
    ]
