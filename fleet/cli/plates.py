"""`fleet plates ...`: the plate registry from the command line.

fleet plates store PLATE [--resort R | --label L] [--hotel H] [--timeout S] [--json]
fleet plates retrieve PLATE [--timeout S] [--json]
fleet plates confirm|abort PLATE [--wait S]   # decide a waiting hand-off
fleet plates migrate                          # create or upgrade the registry's schema
fleet plates where PLATE [--json]             # exit 1 when the plate is not in the fleet
fleet plates list [--resort R] [--free] [--json]
fleet plates history PLATE [--json]
fleet plates resolve RESORT HOTEL ROOM (--occupied PLATE | --empty)
fleet plates import FILE.csv                  # a physical count, all or nothing
fleet plates export [FILE.csv]                # the occupied rooms (stdout without FILE)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from fleet.cli.ops import load_cli_inventory
from fleet.client.handoffs import DEFAULT_PRESENT_WAIT
from fleet.core.errors import PlateError
from fleet.core.identity import who_am_i
from fleet.core.plates import PlateRegistry, RoomRecord

__all__ = ["register"]

T = TypeVar("T")


def register(subparsers: Any) -> None:
    """Add `plates` and its verbs to the `fleet` parser."""
    group = subparsers.add_parser("plates", help="which plate is in which room")
    verbs = group.add_subparsers(dest="plates_verb", metavar="VERB")
    verbs.required = True

    def verb(name: str, handler: Callable[[argparse.Namespace], int], text: str) -> Any:
        p = verbs.add_parser(name, help=text, description=text)
        p.add_argument("--inventory", metavar="FILE", help="inventory (default $FLEET_INVENTORY)")
        p.set_defaults(handler=handler)
        return p

    p = verb("store", _store, "put a plate in a free room: present it, wait for the hand-off")
    p.add_argument("plate", metavar="PLATE")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--resort", metavar="R", help="the resort (default: one with --label)")
    where.add_argument("--label", metavar="L", action="append", help="choose a resort by label")
    p.add_argument("--hotel", metavar="H", help="a room in this hotel")
    p.add_argument("--labware", metavar="TYPE", help="what the plate is (e.g. 96-well)")
    p.add_argument("--owner", metavar="WHO", help="whose plate it is")
    _handoff_options(p)
    p = verb("retrieve", _retrieve, "take a plate out: present its room, wait for the hand-off")
    p.add_argument("plate", metavar="PLATE")
    _handoff_options(p)
    for name, text in (
        ("confirm", "the plate was put in (taken out): commit the waiting hand-off"),
        ("abort", "the hand-off did not happen: the room stays as it was"),
    ):
        p = verb(name, _decide, text)
        p.add_argument("plate", metavar="PLATE")
        p.add_argument(
            "--wait",
            type=float,
            default=DEFAULT_PRESENT_WAIT,
            metavar="S",
            help="seconds to wait for the plate's room to be presented "
            f"(default {DEFAULT_PRESENT_WAIT:g})",
        )
    verb("migrate", _migrate, "create or upgrade the registry's database schema")
    p = verb("where", _where, "the room a plate is in (exit 1 when it is not in the fleet)")
    p.add_argument("plate", metavar="PLATE")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = verb("list", _list, "the plates in the fleet (or the free rooms)")
    p.add_argument("--resort", metavar="R", help="one resort")
    p.add_argument("--free", action="store_true", help="list the free rooms instead")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = verb("history", _history, "every change that involved a plate")
    p.add_argument("plate", metavar="PLATE")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = verb("resolve", _resolve, "say what an uncertain room holds, after looking")
    p.add_argument("resort", metavar="RESORT")
    p.add_argument("hotel", metavar="HOTEL")
    p.add_argument("room", metavar="ROOM", type=_room_number)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--occupied", metavar="PLATE", help="the room holds PLATE")
    what.add_argument("--empty", action="store_true", help="the room is empty")
    p = verb("import", _import, "replace the occupancy by a physical count (CSV, all or nothing)")
    p.add_argument("file", metavar="FILE.csv")
    p = verb("export", _export, "write the occupied rooms as a count file (CSV)")
    p.add_argument("file", metavar="FILE.csv", nargs="?", help="default: standard output")


def _handoff_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds to wait for confirm or abort (default 600); then the room is uncertain",
    )
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds to wait for a busy resort (default 300)",
    )
    p.add_argument("--json", action="store_true", help="print the room as JSON")


def _run_handoff(args: argparse.Namespace, kind: str, **target: Any) -> int:
    """Check the request (no server needed), then run the hand-off and print the room."""
    from fleet.client import AsyncFleetClient
    from fleet.core.server import api_settings

    if not args.timeout > 0:
        raise PlateError(f"--timeout: must be a number of seconds above 0, got {args.timeout:g}")
    inv = load_cli_inventory(args)
    client = AsyncFleetClient(inv, lock_timeout=args.lock_timeout)
    resort, hotel = target.get("resort"), target.get("hotel")
    asyncio.run(
        client.check_handoff(kind, args.plate, resort=resort, hotel=hotel, timeout=args.timeout)
    )
    with api_settings(inv):
        print(
            f"{args.plate}: waiting for `fleet plates confirm|abort {args.plate}`", file=sys.stderr
        )
        if kind == "store":
            room = asyncio.run(client.store_plate(args.plate, timeout=args.timeout, **target))
        else:
            room = asyncio.run(client.retrieve_plate(args.plate, timeout=args.timeout))
    if args.json:
        print(json.dumps(room))
    else:
        place = f"{room['resort']} hotel {room['hotel']} room {room['room']}"
        print(f"{args.plate}: {place} ({room['state']})")
    return 0


def _store(args: argparse.Namespace) -> int:
    return _run_handoff(
        args,
        "store",
        resort=args.resort,
        selector={"labels": args.label} if args.label else None,
        hotel=args.hotel,
        labware=args.labware,
        owner=args.owner,
    )


def _retrieve(args: argparse.Namespace) -> int:
    return _run_handoff(args, "retrieve")


def _decide(args: argparse.Namespace) -> int:
    from fleet.client.handoffs import send_decision
    from fleet.core.server import api_settings

    if args.wait < 0:
        raise PlateError(f"--wait: must be a number of seconds from 0, got {args.wait:g}")
    inv = load_cli_inventory(args)
    with api_settings(inv):
        room = asyncio.run(send_decision(inv, args.plate, args.plates_verb, wait=args.wait))
    print(f"{args.plate}: {args.plates_verb} sent to the hand-off at {_line(room)}")
    return 0


def _room_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"ROOM must be a room number from 1, got {text!r}")
    return value


def _with_registry(
    args: argparse.Namespace, use: Callable[[Any, PlateRegistry], Awaitable[T]]
) -> T:
    """Run `use(inventory, registry)` on the inventory's registry (migrated, rooms in sync);
    each change is shown in the resorts' occupancy artifacts when the fleet's server answers."""
    from fleet.core.plates.config import open_registry

    inv = load_cli_inventory(args)

    async def run() -> T:
        registry = await open_registry(inv, on_change=_artifact_publisher(inv))
        try:
            return await use(inv, registry)
        finally:
            await registry.close()

    return asyncio.run(run())


def _artifact_publisher(inv: Any) -> Callable[[Any, list[str]], Awaitable[None]]:
    """An `on_change` hook: publish the changed resorts' occupancy artifacts on the fleet's
    server; when none answers, say so in one line (the registry is the record)."""
    from fleet.core.errors import FleetError
    from fleet.core.plates.occupancy import publish_changed
    from fleet.core.server import api_settings

    async def publish(registry: Any, resorts: list[str]) -> None:
        try:
            with api_settings(inv):
                await publish_changed(registry, resorts)
        except FleetError as exc:
            print(f"fleet: warning: occupancy artifact not updated: {exc}", file=sys.stderr)

    return publish


def _migrate(args: argparse.Namespace) -> int:
    from fleet.core.plates.config import migrate_registry

    print(asyncio.run(migrate_registry(load_cli_inventory(args))).describe())
    return 0


def _line(room: RoomRecord) -> str:
    handoff = f", {room.handoff} hand-off" if room.state in ("reserved", "uncertain") else ""
    return f"{room.resort} hotel {room.hotel} room {room.room} ({room.state}{handoff})"


def _where(args: argparse.Namespace) -> int:
    room = _with_registry(args, lambda inv, reg: reg.where(args.plate))
    if room is None:
        if args.json:
            print(json.dumps({"plate": args.plate, "state": None}))
        print(f"fleet: plate {args.plate} is not in the fleet", file=sys.stderr)
        return 1
    print(json.dumps(room.to_dict()) if args.json else f"{args.plate}: {_line(room)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    async def rooms(inv: Any, reg: PlateRegistry) -> list[RoomRecord]:
        if args.resort is not None:
            inv.resort(args.resort)  # unknown resort: one line, exit 2
        found = await reg.rooms(resort=args.resort)
        return [r for r in found if (r.state == "free") == args.free]

    found = _with_registry(args, rooms)
    if args.json:
        print(json.dumps([r.to_dict() for r in found]))
        return 0
    for r in found:
        print(f"{r.resort} {r.hotel} {r.room}" if args.free else f"{r.plate}: {_line(r)}")
    return 0


def _history(args: argparse.Namespace) -> int:
    entries = _with_registry(args, lambda inv, reg: reg.history(args.plate))
    if not entries:
        raise PlateError(f"plate {args.plate} has no history in the registry")
    if args.json:
        print(json.dumps([e.to_dict() for e in entries]))
        return 0
    for e in entries:
        run = f" run {e.flow_run_id}" if e.flow_run_id else ""
        print(
            f"{e.at.isoformat(timespec='seconds')}  {e.action:<20} {e.resort} {e.hotel} "
            f"{e.room}  {e.from_state or '-'} -> {e.to_state}  by {e.who}{run}"
        )
    return 0


def _resolve(args: argparse.Namespace) -> int:
    async def resolve(inv: Any, reg: PlateRegistry) -> RoomRecord:
        resort = inv.resort(args.resort)
        if args.hotel not in resort.hotels:
            raise PlateError(
                f"HOTEL: {resort.name} has hotels {', '.join(resort.hotels)}, got {args.hotel!r}"
            )
        return await reg.resolve(
            resort.name, args.hotel, args.room, occupied_by=args.occupied, who=who_am_i()
        )

    room = _with_registry(args, resolve)
    print(
        f"{room.resort} hotel {room.hotel} room {room.room}: {room.state}"
        + (f" ({room.plate})" if room.plate else "")
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    from fleet.core.plates.count_file import parse_count

    inv = load_cli_inventory(args)
    try:
        text = Path(args.file).read_text()
    except OSError as exc:
        raise PlateError(f"{args.file}: cannot read: {exc.strerror}") from exc
    rows = parse_count(text, args.file, inv)  # every problem before the registry is touched
    count = _with_registry(args, lambda _inv, reg: reg.replace_occupancy(rows, who=who_am_i()))
    print(f"imported {args.file}: {count} occupied rooms; every other room is free")
    return 0


def _export(args: argparse.Namespace) -> int:
    from fleet.core.plates.count_file import write_count

    async def export(inv: Any, reg: PlateRegistry) -> str:
        rooms = await reg.rooms(state="occupied")
        plates = {r.plate: await reg.plate(r.plate) for r in rooms if r.plate}
        return write_count(rooms, {k: v for k, v in plates.items() if v is not None})

    text = _with_registry(args, export)
    if args.file:
        Path(args.file).write_text(text)
    else:
        sys.stdout.write(text)
    return 0
