"""`fleet health`, `fleet recover` and `fleet speed`: look after the servos through parent flows.

    fleet health [RESORT ...] [--json]          # temperature, voltage, hardware errors
    fleet recover RESORT                        # reboot the servo: clears a latched overload
    fleet speed RESORT DEG_S [--acceleration DEG_S2]

`health` asks every (or each named) resort's servo, concurrently, without taking locks, and exits
1 when any resort is not healthy. `recover` and `speed` run under the resort's lock like a move.
The inventory comes from `--inventory FILE`, else `$FLEET_INVENTORY`, else `inventory/demo.yaml`.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from fleet.cli.ops import add_common_options, load_cli_inventory, number_argument, run_single

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add `health`, `recover`, `unlock` and `speed` to the `fleet` parser."""
    p = subparsers.add_parser(
        "health",
        help="servo health of every (or each named) resort",
        description="Read temperature, voltage, current and hardware errors of each resort's "
        "servo (a device run per resort, no lock). Exit 1 when any resort is not healthy.",
    )
    p.add_argument("resorts", nargs="*", metavar="RESORT")
    p.add_argument("--inventory", metavar="FILE", help="inventory (default $FLEET_INVENTORY)")
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="seconds to wait for each resort's answer (default 30)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_health)

    p = subparsers.add_parser(
        "recover",
        help="reboot a resort's servo to clear a hardware error (overload, ...)",
        description="Reboot RESORT's servo under its lock: latched hardware errors (overload, "
        "overheating, ...) are cleared and the agent re-applies its settings. Clear an e-stop "
        "first. Prints the health after the reboot.",
    )
    add_common_options(p)
    p.add_argument("resort", metavar="RESORT")
    p.set_defaults(handler=_recover)

    p = subparsers.add_parser(
        "unlock",
        help="free a resort lock whose holder's lease is gone",
        description="Free RESORT's lock when its slot is still counted but no live lease holds "
        "it (e.g. after a Redis restarted without its data). A lock held by a live lease is "
        "never freed: exit 4 naming the holder. Exit 0 when freed or already free.",
    )
    p.add_argument("resort", metavar="RESORT")
    p.add_argument("--inventory", metavar="FILE", help="inventory (default $FLEET_INVENTORY)")
    p.add_argument(
        "--force",
        action="store_true",
        help="also free a lock taken with no holder record (only when no scheduler can hold it)",
    )
    p.set_defaults(handler=_unlock)

    p = subparsers.add_parser(
        "speed",
        help="set a resort's speed (deg/s) for later moves",
        description="Set RESORT's carousel speed (and acceleration) under its lock. It lasts "
        "until the agent restarts; the inventory's values are the default.",
    )
    add_common_options(p)
    p.add_argument("resort", metavar="RESORT")
    p.add_argument("speed", metavar="DEG_S", type=number_argument("DEG_S", "degrees per second"))
    p.add_argument(
        "--acceleration",
        type=number_argument("--acceleration", "degrees per second squared"),
        metavar="DEG_S2",
        help="deg/s^2 (0 = rectangular profile; default: keep the current one)",
    )
    p.set_defaults(handler=_speed)


def _seconds(text: str) -> float:
    value = number_argument("--timeout", "seconds")(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"--timeout must be more than 0 seconds, got {text!r}")
    return value


def _recover(args: argparse.Namespace) -> int:
    return run_single(args, "recover")


def _unlock(args: argparse.Namespace) -> int:
    from prefect.utilities.asyncutils import run_coro_as_sync

    from fleet.core.locks import unlock
    from fleet.core.server import api_settings

    inv = load_cli_inventory(args)
    inv.resort(args.resort)  # an unknown resort: one line, exit 1, before any server is asked
    with api_settings(inv):
        result = run_coro_as_sync(unlock(args.resort, force=args.force))
    assert result is not None
    print(result.message)
    return 0


def _speed(args: argparse.Namespace) -> int:
    return run_single(args, "set_speed", args.speed, args.acceleration)


def _healthy(entry: dict[str, Any]) -> bool:
    result = entry.get("result") or {}
    return entry.get("state") == "Completed" and bool(result.get("ok"))


def _row(name: str, entry: dict[str, Any]) -> tuple[str, ...]:
    result = entry.get("result") or {}

    def num(key: str, fmt: str) -> str:
        value = result.get(key)
        return format(value, fmt) if isinstance(value, int | float) else "-"

    problems = [*result.get("hardware_errors", []), *result.get("warnings", [])]
    if entry.get("error"):
        problems.append(str(entry["error"]).splitlines()[0])
    return (
        name,
        "ok" if _healthy(entry) else ("NOT OK" if result else entry.get("state", "-")),
        num("temperature", ".0f"),
        num("voltage", ".1f"),
        num("current", ".2f"),
        ("yes" if result.get("torque") else "no") if result else "-",
        "; ".join(problems)[:80],
    )


def _health(args: argparse.Namespace) -> int:
    from fleet.client import FleetClient
    from fleet.core.plan import known_resort
    from fleet.core.server import api_settings

    inv = load_cli_inventory(args)
    for name in args.resorts:
        known_resort(inv, name)  # before any run
    with api_settings(inv):
        report = FleetClient(inv).health(args.resorts or None, timeout=args.timeout)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True, default=str))
    else:
        header = ("RESORT", "HEALTH", "TEMP C", "VOLT V", "CURR A", "TORQUE", "PROBLEMS")
        table = [header, *(_row(name, entry) for name, entry in report.items())]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0 if all(_healthy(e) for e in report.values()) else 1
