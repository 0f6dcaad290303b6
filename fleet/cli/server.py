"""`fleet server up|down|status`: the embedded local Prefect server (see `fleet.core.server`).

`fleet server up` also migrates the inventory's plate registry (`fleet.core.plates.config`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict

from fleet.core import server

__all__ = ["register"]

EXIT_NOT_RUNNING = 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `server` verb group."""
    parser = subparsers.add_parser(
        "server",
        help="run a local Prefect server (SQLite) for the fleet",
        description=(
            "A local Prefect server under the project state directory "
            "(default ./.fleet-state, or $FLEET_STATE_DIR). Commands use PREFECT_API_URL "
            "instead when it is set."
        ),
    )
    verbs = parser.add_subparsers(dest="server_command", metavar="VERB")
    verbs.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--state-dir",
            metavar="DIR",
            help="project state directory (default $FLEET_STATE_DIR or ./.fleet-state)",
        )

    up = verbs.add_parser(
        "up",
        help="start the server unless it already runs; migrate the plate registry",
        description="Start the local Prefect server unless it already runs. First, the "
        "inventory's plate registry is migrated to this version's schema (as `fleet plates "
        "migrate`); without an inventory (no --inventory, $FLEET_INVENTORY or "
        "inventory/demo.yaml) that step is skipped.",
    )
    common(up)
    up.add_argument(
        "--inventory",
        metavar="FILE",
        help="the inventory whose plate registry to migrate (default $FLEET_INVENTORY)",
    )
    up.add_argument("--port", type=int, help="loopback port (default: a free one)")
    up.add_argument("--no-ui", action="store_true", help="do not serve the Prefect UI")
    up.add_argument(
        "--auth-file",
        metavar="FILE",
        help="require this auth string (user:password, file mode 0600) from every client",
    )
    up.add_argument(
        "--database-url",
        metavar="URL",
        help="PostgreSQL (postgresql+asyncpg://...) instead of the local SQLite file",
    )
    up.add_argument(
        "--timeout", type=float, default=90.0, help="seconds to wait for health (default 90)"
    )
    up.set_defaults(handler=_up)

    down = verbs.add_parser("down", help="stop the server")
    common(down)
    down.set_defaults(handler=_down)

    status = verbs.add_parser("status", help="is it running, and where (exit 3 when not)")
    common(status)
    status.add_argument("--json", action="store_true", help="print the record as JSON")
    status.set_defaults(handler=_status)


def _print_info(info: server.ServerInfo) -> None:
    print(f"  API:  {info.api_url}")
    if info.ui_url:
        print(f"  UI:   {info.ui_url}")
    print(f"  pid {info.pid}, database {info.database}, log {info.log_path}")
    if info.auth_file:
        print(f"  clients need the auth string: export FLEET_AUTH_FILE={info.auth_file}")
    print(f"export PREFECT_API_URL={info.api_url}")


def _up(args: argparse.Namespace) -> int:
    if args.port is not None and not 0 < args.port < 65536:
        print(f"fleet: error: --port {args.port}: must be 1-65535", file=sys.stderr)
        return 2
    from fleet.core.server_db import sqlite_revision

    _migrate_registry(args)  # before the server starts: a registry out of reach starts nothing
    home = server.server_home(args.state_dir)
    before = None if args.database_url else sqlite_revision(home)
    started_at = time.monotonic()
    info, started = server.server_up(
        args.state_dir,
        port=args.port,
        ui=not args.no_ui,
        auth_file=args.auth_file,
        database_url=args.database_url,
        timeout=args.timeout,
    )
    if started:
        print(f"Prefect server started in {time.monotonic() - started_at:.1f} s")
        after = None if args.database_url else sqlite_revision(home)
        if before is not None and after is not None and after != before:
            print(f"  database upgraded by Prefect's migrations: revision {before} -> {after}")
    else:
        print("Prefect server already running")
    _print_info(info)
    return 0


def _migrate_registry(args: argparse.Namespace) -> None:
    """Migrate the inventory's plate registry; one line saying its schema revision."""
    from fleet.core.errors import InventoryError
    from fleet.core.inventory import inventory_path, load_inventory
    from fleet.core.plates.config import migrate_registry

    try:
        path = inventory_path(args.inventory)
    except InventoryError:
        print("plate registry: no inventory (--inventory or $FLEET_INVENTORY): not migrated")
        return
    inv = load_inventory(path)
    print(asyncio.run(migrate_registry(inv, args.state_dir)).describe())


def _down(args: argparse.Namespace) -> int:
    info = server.server_down(args.state_dir)
    if info is None:
        print(f"no Prefect server running (state {server.server_dir(args.state_dir)})")
    else:
        print(f"Prefect server stopped (pid {info.pid}, {info.api_url})")
    return 0


def _status(args: argparse.Namespace) -> int:
    info = server.server_status(args.state_dir)
    if args.json:
        print(json.dumps({"running": info is not None, **(asdict(info) if info else {})}))
    elif info is None:
        print(f"no Prefect server running (state {server.server_dir(args.state_dir)})")
    else:
        print(f"Prefect server running since {time.ctime(info.started_at)}")
        _print_info(info)
    return 0 if info is not None else EXIT_NOT_RUNNING
