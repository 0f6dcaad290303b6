"""`fleet provision`, `fleet drain RESORT`, `fleet resume RESORT` (see `fleet.core.provision`)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from fleet.core.errors import PlanError
from fleet.core.inventory import INVENTORY_ENV

__all__ = ["register"]


def _inventory_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--inventory",
        "-i",
        metavar="FILE",
        default=os.environ.get(INVENTORY_ENV),
        help=f"inventory YAML file (default ${INVENTORY_ENV})",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="project state directory of the local server (default $FLEET_STATE_DIR or "
        "./.fleet-state)",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `provision`, `drain` and `resume` verbs."""
    prov = subparsers.add_parser(
        "provision",
        help="create or update pools, queues, locks and deployments from the inventory",
        description=(
            "Make the Prefect server hold what the inventory describes: the device work pool, one "
            "queue and one lock per resort, the fleet-wide move limit, the device and parent "
            "deployments. Prints the plan; a second run changes nothing."
        ),
    )
    _inventory_arg(prov)
    prov.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    prov.add_argument(
        "--prune",
        action="store_true",
        help="also delete fleet queues, locks and deployments the inventory no longer lists",
    )
    prov.add_argument("--json", action="store_true", help="print the plan as JSON")
    prov.add_argument("--changes-only", action="store_true", help="list only objects that change")
    prov.set_defaults(handler=_provision)

    drain = subparsers.add_parser(
        "drain",
        help="pause a resort's queue and wait until its runs finish",
        description=(
            "Pause RESORT's work queue (new runs wait, scheduled runs stay queued) and wait until "
            "no run on it is Pending, Running or Cancelling. Exit 4 when runs are still active "
            "after --timeout (the queue stays paused)."
        ),
    )
    drain.add_argument("resort", metavar="RESORT")
    _inventory_arg(drain)
    drain.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")
    drain.set_defaults(handler=_drain)

    resume = subparsers.add_parser("resume", help="unpause a drained resort's queue")
    resume.add_argument("resort", metavar="RESORT")
    _inventory_arg(resume)
    resume.set_defaults(handler=_resume)


def _load(args: argparse.Namespace):  # -> Inventory (lazy import keeps --help fast)
    from fleet.core.inventory import load_inventory

    if not args.inventory:
        raise PlanError(f"--inventory: required (or set {INVENTORY_ENV})")
    return load_inventory(args.inventory)


def _provision(args: argparse.Namespace) -> int:
    from fleet.core.provision import provision
    from fleet.core.server import api_settings

    inv = _load(args)
    with api_settings(inv, state=args.state_dir) as target:
        plan = provision(inv, dry_run=args.dry_run, prune=args.prune)
        published = None if args.dry_run else _publish_occupancy(inv, args.state_dir)
    if args.json:
        extra = {"occupancy": published} if published is not None else {}
        print(json.dumps({**plan.to_dict(), "api_url": target.url, **extra}, indent=2))
    else:
        print(f"Prefect API {target.url} ({target.source})")
        print(plan.format(show_unchanged=not args.changes_only))
        if published is not None:
            print(published)
    return 0


def _publish_occupancy(inv: Any, state: Any) -> str:
    """Publish every resort's occupancy artifact (so the UI shows each resort's rooms from the
    start); one line saying what was done, or why not (the registry is not migrated)."""
    import asyncio

    from fleet.core.errors import FleetError
    from fleet.core.plates.config import open_registry
    from fleet.core.plates.occupancy import publish_changed

    async def publish() -> int:
        registry = await open_registry(inv, state)
        try:
            await publish_changed(registry, [r.name for r in inv.resorts])
        finally:
            await registry.close()
        return len(inv.resorts)

    try:
        count = asyncio.run(publish())
    except FleetError as exc:
        return f"plate occupancy artifacts not published: {exc}"
    return f"plate occupancy artifacts published for {count} resorts"


def _drain(args: argparse.Namespace) -> int:
    from fleet.core.provision import drain
    from fleet.core.server import api_settings

    if args.timeout < 0:
        raise PlanError(f"--timeout {args.timeout:g}: must be >= 0 seconds")
    inv = _load(args)
    with api_settings(inv, state=args.state_dir):
        result = drain(inv, args.resort, timeout=args.timeout)
    waiting = (
        f"; {result.scheduled_runs} scheduled run(s) wait for `fleet resume {result.resort}`"
        if result.scheduled_runs
        else ""
    )
    print(
        f"resort {result.resort} drained: queue {result.queue} paused, no run active "
        f"(waited {result.waited:.1f} s){waiting}"
    )
    return 0


def _resume(args: argparse.Namespace) -> int:
    from fleet.core.provision import resume
    from fleet.core.server import api_settings

    inv = _load(args)
    with api_settings(inv, state=args.state_dir):
        result = resume(inv, args.resort)
    print(
        f"resort {result.resort} resumed: queue {result.queue} open, "
        f"{result.scheduled_runs} scheduled run(s) waiting"
    )
    return 0
