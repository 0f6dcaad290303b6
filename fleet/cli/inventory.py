"""`fleet inventory check|show|schema`: validate, view and describe inventory files."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from fleet.core import watchdog
from fleet.core.inventory import Inventory, dump_schema, load_inventory
from resort_common import names

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `inventory` verb group to the `fleet` command."""
    parser = subparsers.add_parser(
        "inventory", help="validate and show inventory files", description=__doc__
    )
    sub = parser.add_subparsers(dest="inventory_command", metavar="ACTION")
    sub.required = True

    check = sub.add_parser(
        "check", help="validate FILE (exit 0 when valid, 2 with one line per problem)"
    )
    check.add_argument("file", metavar="FILE", help="inventory YAML file")
    check.set_defaults(handler=_check)

    show = sub.add_parser("show", help="show FILE with defaults applied and derived names")
    show.add_argument("file", metavar="FILE", help="inventory YAML file")
    show.add_argument("--json", action="store_true", help="machine-readable JSON")
    show.set_defaults(handler=_show)

    schema = sub.add_parser("schema", help="print the JSON Schema of the inventory file format")
    schema.set_defaults(handler=_schema)


def _check(args: argparse.Namespace) -> int:
    inv = load_inventory(args.file)
    active = sum(r.active for r in inv.resorts)
    inactive = len(inv.resorts) - active
    suffix = f" ({inactive} inactive)" if inactive else ""
    print(f"ok: {len(inv.resorts)} resorts{suffix} in fleet {inv.fleet.name}")
    return 0


def _show(args: argparse.Namespace) -> int:
    inv = load_inventory(args.file)
    if args.json:
        json.dump(inv.to_resolved_dict(), sys.stdout, indent=2)
        print()
    else:
        print(_table(inv))
    return 0


def _schema(args: argparse.Namespace) -> int:
    sys.stdout.write(dump_schema())
    return 0


def _num(value: float) -> str:
    return f"{value:g}"


def _table(inv: Inventory) -> str:
    fleet = inv.fleet
    limit = fleet.max_concurrent_moves
    moves = "none" if limit is None else f"{limit} ({names.fleet_limit_name(inv)})"
    lines = [
        f"fleet {fleet.name}  ({inv.path})",
        f"  device pool   {fleet.work_pool}",
        f"  control pool  {fleet.control_pool}",
        f"  api url       {fleet.api_url or '(agent default PREFECT_API_URL)'}",
        f"  move limit    {moves}",
        f"  parent beat   {_num(fleet.parent_heartbeat)} s (a silent parent run is Crashed after "
        f"{_num(watchdog.window(fleet.parent_heartbeat))} s)",
        "",
    ]
    header = (
        "RESORT",
        "ACTIVE",
        "HOST",
        "SERIAL PORT",
        "BAUD",
        "ID",
        "HOTELS",
        "SPEED",
        "ACCEL",
        "DIR",
        "LABELS",
    )
    rows: list[tuple[str, ...]] = [header]
    for r in inv.resorts:
        rows.append(
            (
                r.name,
                "yes" if r.active else "no",
                r.host + (" (emulated)" if r.emulate else ""),
                r.serial_port,
                str(r.baudrate),
                str(r.motor_id),
                ",".join(r.hotels),
                _num(r.speed),
                _num(r.acceleration),
                f"{r.rotation_direction:+d}",
                ",".join(r.labels) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines += ["", "units: speed deg/s, accel deg/s^2 (0 = rectangular profile)", ""]
    lines += ["derived names (queue | lock | worker | e-stop variable | status variable):"]
    for r in inv.resorts:
        n: dict[str, Any] = r.derived_names()
        lines.append(
            f"  {r.name}: {n['work_queue']} | {n['lock']} | {n['worker']} | "
            f"{n['estop_variable']} | {n['status_variable']}"
        )
    return "\n".join(lines)
