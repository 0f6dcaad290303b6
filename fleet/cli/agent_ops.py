"""`fleet estop`, `fleet estop-clear`, `fleet status`, `fleet overview`: safety and state verbs.

    fleet estop resort-a [resort-b ...] [--reason TEXT]     # or: fleet estop --all
    fleet estop-clear resort-a
    fleet status [RESORT ...] [--json] [--wait S]          # --wait: until online, link up
    fleet overview [--watch]                                # the fleet's overview artifact

The inventory comes from `--inventory FILE`, else `$FLEET_INVENTORY`, else `inventory/demo.yaml`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from fleet.core.errors import PlanError

__all__ = ["register"]


def _load(args: argparse.Namespace) -> Any:
    from fleet.core.inventory import inventory_path, load_inventory

    return load_inventory(inventory_path(args.inventory))


def register(subparsers: Any) -> None:
    """Add `estop`, `estop-clear`, `status` and `overview` to the `fleet` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--inventory", help="inventory file (default: $FLEET_INVENTORY)")
    common.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the agents' ack"
    )

    stop = subparsers.add_parser(
        "estop",
        parents=[common],
        help="emergency stop: torque off now, latched until estop-clear",
        description="Switch torque off on RESORTs now (out of band of their queues) and latch.",
    )
    stop.add_argument("resorts", nargs="*", metavar="RESORT")
    stop.add_argument("--all", action="store_true", help="every resort of the inventory")
    stop.add_argument("--reason", default="fleet estop", help="why (shown in status and logs)")
    stop.set_defaults(handler=_estop)

    clear = subparsers.add_parser(
        "estop-clear",
        parents=[common],
        help="release the emergency-stop latch",
        description="Release the e-stop latch of RESORTs; motion runs are accepted again.",
    )
    clear.add_argument("resorts", nargs="*", metavar="RESORT")
    clear.add_argument("--all", action="store_true", help="every resort of the inventory")
    clear.set_defaults(handler=_clear)

    status = subparsers.add_parser(
        "status",
        help="per-resort status: online, connected, position, e-stop, errors",
        description="Show each resort's agent status. SPEED is the agent's speed in deg/s, "
        "marked * when `fleet speed` changed it from the inventory's. ROOMS FREE: free rooms "
        "of all rooms, from the plate registry (- when it cannot be read: why, on stderr).",
    )
    status.add_argument("resorts", nargs="*", metavar="RESORT", help="only these (default: all)")
    status.add_argument("--inventory", help="inventory file (default: $FLEET_INVENTORY)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument(
        "--wait",
        type=float,
        metavar="S",
        help="first wait up to S seconds until the resorts are ready: agent online, serial "
        "link up (exit 1 naming those that are not; e.g. after starting agents)",
    )
    status.set_defaults(handler=_status)

    overview = subparsers.add_parser(
        "overview",
        help="print the fleet overview and publish it as the fleet's table artifact",
        description="Print one row per resort and write it as a new version of the keyed "
        "artifact fleet-<fleet>-overview when it changed. --watch keeps it current until "
        "Ctrl-C, as `fleet controller` does.",
    )
    overview.add_argument("--inventory", help="inventory file (default: $FLEET_INVENTORY)")
    overview.add_argument("--watch", action="store_true", help="keep the artifact current")
    overview.set_defaults(handler=_overview)


def _targets(args: argparse.Namespace) -> list[str] | None:
    if args.all and args.resorts:
        raise PlanError("give RESORT names or --all, not both")
    if not args.all and not args.resorts:
        raise PlanError("name at least one RESORT (or use --all)")
    return None if args.all else list(args.resorts)


def _estop(args: argparse.Namespace) -> int:
    from fleet.core.estop import estop
    from fleet.core.server import api_settings

    targets = _targets(args)
    inv = _load(args)
    with api_settings(inv):
        acks = estop(inv, targets, args.reason, timeout=args.timeout)
    for ack in acks:
        where = f" at {ack.position:.1f} deg" if ack.position is not None else ""
        print(
            f"{ack.resort}: stopped{where}, torque off confirmed "
            f"(ack after {ack.latency * 1000:.0f} ms)"
        )
    return 0


def _clear(args: argparse.Namespace) -> int:
    from fleet.core.estop import clear_estop
    from fleet.core.server import api_settings

    targets = _targets(args)
    inv = _load(args)
    with api_settings(inv):
        acks = clear_estop(inv, targets, timeout=args.timeout)
    for ack in acks:
        print(f"{ack.resort}: e-stop cleared (ack after {ack.latency * 1000:.0f} ms)")
    return 0


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _speed_cell(speed: float | None, configured: float) -> str:
    """deg/s in use; marked `*` when `fleet speed` changed it from the inventory's value."""
    if speed is None:
        return "-"
    return f"{speed:g}" + ("*" if abs(speed - configured) > 1e-6 else "")


#: longest `fleet status --wait` (an hour: a rollout of many Pis)
MAX_WAIT = 3600.0
#: seconds between two status reads while waiting
WAIT_POLL = 0.5


def _ready(row: Any) -> bool:
    return bool(row.online and row.connected and not row.faulted)


def _status_targets(args: argparse.Namespace, inv: Any) -> list[str]:
    """The named resorts (all when none), checked with `--wait` before the server is asked."""
    names = list(dict.fromkeys(args.resorts))
    known = [r.name for r in inv.resorts]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise PlanError(
            f"RESORT: unknown {', '.join(unknown)}; the inventory has {', '.join(known)}"
        )
    if args.wait is not None and not 0 <= args.wait <= MAX_WAIT:
        raise PlanError(f"--wait {args.wait:g}: must be 0-{MAX_WAIT:.0f} seconds")
    return names or known


def _read_rows(inv: Any, names: list[str], wait: float | None) -> list[Any]:
    """The status rows of `names`, read once, or until all are ready or `wait` s have passed."""
    import time

    from fleet.core.status import read_status

    deadline = time.monotonic() + (wait or 0.0)
    while True:
        rows = [r for r in read_status(inv) if r.name in names]
        if wait is None or all(_ready(r) for r in rows) or time.monotonic() >= deadline:
            return rows
        time.sleep(WAIT_POLL)


def _status(args: argparse.Namespace) -> int:
    import sys

    from fleet.core.server import api_settings
    from fleet.core.status import read_free_rooms

    inv = _load(args)
    names = _status_targets(args, inv)
    with api_settings(inv):
        rows = _read_rows(inv, names, args.wait)
    rows, no_rooms = read_free_rooms(inv, rows)
    if no_rooms:
        print(f"fleet: warning: free rooms unknown: {no_rooms}", file=sys.stderr)
    late = [r.name for r in rows if not _ready(r)] if args.wait is not None else []
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2, sort_keys=True))
    else:
        _print_table(inv, rows)
    if late:
        print(f"fleet: not ready after {args.wait:g} s: {', '.join(late)}", file=sys.stderr)
        return 1
    return 0


def _print_table(inv: Any, rows: list[Any]) -> None:
    header = (
        "RESORT",
        "ONLINE",
        "LINK",
        "POSITION",
        "HOTEL",
        "MOVING",
        "SPEED",
        "E-STOP",
        "QUEUE",
        "ROOMS FREE",
        "ERROR",
    )
    table = [header]
    for r in rows:
        queue = "-" if r.queue_paused is None else ("paused" if r.queue_paused else "open")
        table.append(
            (
                r.name,
                _cell(r.online),
                "ok" if r.connected else ("FAULT" if r.faulted else "-"),
                _cell(r.position),
                _cell(r.active_hotel),
                _cell(r.moving),
                _speed_cell(r.speed, inv.resort(r.name).speed),
                "STOPPED" if r.estopped else "no",
                queue,
                "-" if r.rooms_total is None else f"{r.rooms_free}/{r.rooms_total}",
                (r.last_error or "")[:60],
            )
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _overview(args: argparse.Namespace) -> int:
    import contextvars
    import threading

    from fleet.core.overview import COLUMNS, overview_rows, publish_overview, watch_overview
    from fleet.core.server import api_settings
    from fleet.core.status import read_status
    from resort_common import names

    inv = _load(args)
    key = names.overview_artifact_key(inv)
    with api_settings(inv):
        statuses = read_status(inv)
        written = publish_overview(inv, statuses=statuses)
        header = tuple(c.upper() for c in COLUMNS)
        table = [header, *(tuple(row.values()) for row in overview_rows(statuses))]
        widths = [max(len(str(row[i])) for row in table) for i in range(len(COLUMNS))]
        for row in table:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        print(f"artifact {key}: " + ("new version written" if written else "unchanged"))
        if not args.watch:
            return 0
        print(f"keeping {key} current; Ctrl-C to stop")
        stop = threading.Event()
        thread = threading.Thread(
            target=contextvars.copy_context().run, args=(watch_overview, inv, stop), daemon=True
        )
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.5)
        except KeyboardInterrupt:
            stop.set()
            thread.join(5.0)
    return 0
