"""The demo's plate step: store plates with a simulated arm confirming each hand-off, retrieve one.

What a person does with `fleet plates store PLATE ...` in one shell and `fleet plates confirm
PLATE` in a second: here the stores are the same parent flow run through the scheduler API
(`AsyncFleetClient.store_plate`, one per resort, concurrently), and the simulated arm, once a
plate's hand-off is presented (the plate's room `reserved` and its run Paused), runs `fleet plates
confirm PLATE` as a separate process. Then one plate is retrieved the same way, the occupancy is
printed with `fleet plates list`, and where the occupancy artifacts are in the Prefect UI.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from fleet.core.errors import FleetError, PlateError
from fleet.demo.scenario import Console, Row, call_row, say_row

__all__ = ["HANDOFF_TIMEOUT", "demo_plate_ids", "scenario_plates", "store_plan"]

#: how many plates the demo stores (one per resort, in the first active resorts)
STORES = 3
#: seconds a demo hand-off waits for the arm before its room is left uncertain
HANDOFF_TIMEOUT = 60.0
#: seconds the arm waits for a plate's room to be presented
PRESENT_WAIT = 60.0
_POLL = 0.25


def store_plan(inv: Any) -> list[tuple[str, str]]:
    """`(resort, hotel)` of each plate to store: the last hotel of each of the first `STORES`
    active resorts (a hotel the demo's earlier steps leave turned away)."""
    return [(r.name, r.hotels[-1]) for r in inv.resorts if r.active][:STORES]


def demo_plate_ids(in_fleet: set[str], count: int) -> list[str]:
    """The first `count` ids `DEMO-0001`, `DEMO-0002`, ... that are not in the fleet now."""
    found: list[str] = []
    n = 0
    while len(found) < count:
        n += 1
        plate = f"DEMO-{n:04d}"
        if plate not in in_fleet:
            found.append(plate)
    return found


def fleet_command(*argv: str) -> list[str]:
    """`fleet ARGV...` as a separate process (the venv's `fleet` script, else the module)."""
    script = Path(sys.executable).with_name("fleet")
    if script.exists():
        return [str(script), *argv]
    return [sys.executable, "-c", "import sys; from fleet.cli import main; sys.exit(main())", *argv]


async def run_fleet(*argv: str) -> tuple[int, str]:
    """Run `fleet ARGV...` in a process of its own; its exit code and output (both streams)."""
    proc = await asyncio.create_subprocess_exec(
        *fleet_command(*argv),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return int(proc.returncode or 0), out.decode(errors="replace").rstrip()


async def _presented(client: Any, plate: str) -> dict[str, Any]:
    """Wait until `plate`'s room is `reserved` and its hand-off run Paused (what `fleet plates
    where PLATE --json` and the run's state show); the room."""
    from fleet.client.handoffs import wait_presented

    deadline = time.monotonic() + PRESENT_WAIT
    while True:
        room = await client.where_plate(plate)
        if room is not None and room["state"] == "reserved":
            break
        if time.monotonic() >= deadline:
            raise PlateError(f"plate {plate}: no hand-off presented within {PRESENT_WAIT:g} s")
        await asyncio.sleep(_POLL)
    found, _run_id = await wait_presented(
        client.inventory, plate, wait=max(1.0, deadline - time.monotonic())
    )
    return found.to_dict()


async def arm(
    client: Any, plate: str, inventory: str, console: Console, confirming: asyncio.Event
) -> None:
    """The simulated arm: once `plate`'s hand-off is presented, put the plate in (take it out),
    set `confirming` and run `fleet plates confirm PLATE`. A failure is printed (the hand-off
    then times out: its room is left uncertain)."""
    try:
        room = await _presented(client, plate)
    except FleetError as exc:
        console.line(f"  arm: {exc}")
        return
    where = f"{room['resort']} hotel {room['hotel']} room {room['room']}"
    console.line(f"  arm: {plate} presented at {where} (run paused): hand-off done, confirming")
    confirming.set()
    code, out = await run_fleet("plates", "confirm", plate, "--inventory", inventory)
    last = out.splitlines()[-1] if out else f"exit {code}"
    console.line(f"  arm$ fleet plates confirm {plate}  -> {last}")


async def _ends(call: Any, state: str) -> dict[str, Any]:
    """The room `call` returns, which must be in `state` (else `PlateError`)."""
    room: dict[str, Any] = await call
    if room.get("state") != state:
        raise PlateError(f"plate {room.get('plate')}: the hand-off left its room {room['state']}")
    return room


async def _hand_off(
    client: Any,
    console: Console,
    operation: str,
    plate: str,
    call: Any,
    state: str,
    inventory: str,
) -> Row:
    """One hand-off (`call`, a client call whose room ends in `state`) with the arm confirming
    it; its row. An arm that never saw the room presented stops with the hand-off."""
    confirming = asyncio.Event()
    arm_task = asyncio.create_task(arm(client, plate, inventory, console, confirming))
    row = await call_row("plates", operation, None, _ends(call, state))
    if confirming.is_set():
        await arm_task
    else:
        arm_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await arm_task
    return row


async def scenario_plates(
    client: Any, inv: Any, console: Console, ui_url: str | None = None
) -> list[Row]:
    """Step 4: store a plate in each resort (concurrently), retrieve one, print the occupancy
    and where the Prefect UI (at `ui_url`) shows it room by room."""
    from resort_common import names

    inventory = str(Path(inv.path).resolve())
    plan = store_plan(inv)
    console.line(
        f"== 4. plates: store {len(plan)}, a simulated arm confirms each hand-off; retrieve one =="
    )
    try:
        occupied = await _plates_in_fleet(inv)
    except FleetError as exc:
        row = Row("plates", "read the plate registry", None, "Failed", None, str(exc))
        say_row(console, row)
        return [row]
    plates = demo_plate_ids(occupied, len(plan))
    stores = [
        _hand_off(
            client,
            console,
            f"store {plate} in {resort} hotel {hotel}",
            plate,
            client.store_plate(plate, resort, hotel=hotel, timeout=HANDOFF_TIMEOUT),
            "occupied",
            inventory,
        )
        for plate, (resort, hotel) in zip(plates, plan, strict=True)
    ]
    rows = list(await asyncio.gather(*stores))
    for row in rows:
        say_row(console, row, "  ")
    if len(plates) > 1 and rows[1].ok:
        row = await _hand_off(
            client,
            console,
            f"retrieve {plates[1]}",
            plates[1],
            client.retrieve_plate(plates[1], timeout=HANDOFF_TIMEOUT),
            "free",
            inventory,
        )
        say_row(console, row, "  ")
        rows.append(row)
    code, out = await run_fleet("plates", "list", "--inventory", inventory)
    console.line(f"occupancy ($ fleet plates list){'' if code == 0 else f': exit {code}'}")
    console.raw("\n".join(f"    {line}" for line in out.splitlines()))
    keys = [names.occupancy_artifact_key(r) for r, _ in plan]
    if ui_url:
        console.line("each resort's plates room by room (Prefect UI artifacts):")
        for key in keys:
            console.line(f"  {ui_url}/artifacts/key/{key}")
    else:
        console.line(f"each resort's plates room by room: the artifacts {', '.join(keys)}")
    return rows


async def _plates_in_fleet(inv: Any) -> set[str]:
    from fleet.core.plates.config import open_registry

    registry = await open_registry(inv)
    try:
        return {r.plate for r in await registry.rooms() if r.plate}
    finally:
        await registry.close()
