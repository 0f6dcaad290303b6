"""Target selection: named resorts, selectors, skipped candidates and the least-busy rule."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet.core.errors import DeviceSelectionError
from fleet.core.inventory import load_inventory
from fleet.core.selection import Selector, choose, matching_resorts

INVENTORY = """\
fleet: {name: sel, work_pool: sel-resorts}
defaults: {emulate: true, hotels: [A, B, C, D]}
resorts:
  - {name: r1, host: 127.0.0.1, serial_port: tty1, labels: [cold, reader]}
  - {name: r2, host: 127.0.0.1, serial_port: tty2, labels: [cold], hotels: [A, B, C, D, E, F]}
  - {name: r3, host: 127.0.0.1, serial_port: tty3, labels: [cold, reader], active: false}
  - {name: r4, host: 127.0.0.1, serial_port: tty4, labels: [cold, reader]}
"""


@dataclass
class Status:
    """The fields of `fleet.core.status.ResortStatus` that selection reads."""

    name: str
    online: bool = True
    moving: bool = False
    estopped: bool = False
    faulted: bool = False
    queue_paused: bool = False
    last_error: str | None = None


@pytest.fixture
def inv(tmp_path: Path):
    path = tmp_path / "inv.yaml"
    path.write_text(INVENTORY)
    return load_inventory(path)


def healthy(*names: str) -> dict[str, Status]:
    return {n: Status(n) for n in names}


def test_named_resort_is_returned_when_available(inv) -> None:
    assert choose(inv, resort="r2", statuses=healthy("r1", "r2")).name == "r2"


@pytest.mark.parametrize(
    ("name", "status", "reason"),
    [
        ("r3", Status("r3"), "inactive"),
        ("r1", Status("r1", estopped=True), "e-stopped"),
        ("r1", Status("r1", online=False), "offline"),
        ("r1", None, "offline (no status published by its agent)"),
        ("r1", Status("r1", faulted=True, last_error="overload"), "faulted (overload)"),
        ("r1", Status("r1", queue_paused=True), "drained (queue paused)"),
    ],
)
def test_named_resort_that_cannot_work_fails_with_the_reason(inv, name, status, reason) -> None:
    with pytest.raises(DeviceSelectionError, match=rf"resort {name} is not available: "):
        choose(inv, resort=name, statuses={name: status})
    with pytest.raises(DeviceSelectionError) as info:
        choose(inv, resort=name, statuses={name: status})
    assert str(info.value).endswith(reason)


def test_unknown_resort_lists_known_ones(inv) -> None:
    with pytest.raises(DeviceSelectionError, match=r"unknown resort 'r9'.*known: r1, r2, r3, r4"):
        choose(inv, resort="r9", statuses={})


def test_selector_skips_inactive_and_estopped_and_prefers_least_busy(inv) -> None:
    statuses = healthy("r1", "r2", "r3", "r4")
    statuses["r1"].estopped = True
    selector = Selector(labels=("reader",))
    # r1 e-stopped, r3 inactive, r2 lacks the label: only r4 is left even though it is busy
    assert choose(inv, selector=selector, statuses=statuses, load={"r4": 7}).name == "r4"
    # with r1 back, the less busy of r1 and r4 wins; ties go to inventory order
    statuses["r1"].estopped = False
    assert choose(inv, selector=selector, statuses=statuses, load={"r1": 2, "r4": 1}).name == "r4"
    assert choose(inv, selector=selector, statuses=statuses, load={}).name == "r1"


def test_selector_by_hotel(inv) -> None:
    statuses = healthy("r1", "r2", "r3", "r4")
    assert choose(inv, selector=Selector(hotel="F"), statuses=statuses).name == "r2"
    assert [r.name for r in matching_resorts(inv, Selector(hotel="E"))] == ["r2"]


def test_no_fit_explains_every_candidate(inv) -> None:
    statuses = healthy("r1", "r2", "r4")
    statuses["r1"].estopped = True
    statuses["r4"].online = False
    with pytest.raises(DeviceSelectionError) as info:
        choose(inv, selector=Selector(labels=("reader",)), statuses=statuses)
    assert str(info.value) == (
        "no resort fits labels=[reader]: r1: e-stopped; r2: lacks label(s) reader; "
        "r3: inactive; r4: offline"
    )


def test_exactly_one_of_resort_or_selector(inv) -> None:
    with pytest.raises(DeviceSelectionError, match="exactly one"):
        choose(inv, statuses={})
    with pytest.raises(DeviceSelectionError, match="exactly one"):
        choose(inv, resort="r1", selector=Selector(), statuses={})
