"""`fleet server up|down|status`: the embedded local Prefect server, or several of them behind a
load balancer (`--replicas N`); see `fleet.core.server`.

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
        "inventory/demo.yaml) that step is skipped. With several servers already running, "
        "the members that stopped (Redis, an API replica, the services process) are started "
        "again, each on its port; the others, and every client, carry on.",
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
        "--replicas",
        type=int,
        metavar="N",
        help=(
            "several servers instead of one: PostgreSQL, Redis, N API replicas, one services "
            "process and an HAProxy load balancer (whose URL clients use), all on this machine"
        ),
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
    status.add_argument(
        "--json",
        action="store_true",
        help="print the record as JSON (with several servers: every process, its role and health)",
    )
    status.set_defaults(handler=_status)


def _print_info(
    info: server.ServerInfo,
    cluster: server.ClusterInfo | None = None,
    health: dict[str, str] | None = None,
) -> None:
    print(f"  API:  {info.api_url}" + ("  (load balancer)" if cluster else ""))
    if info.ui_url:
        print(f"  UI:   {info.ui_url}")
    if cluster is None:
        print(f"  pid {info.pid}, database {info.database}, log {info.log_path}")
    else:
        print(f"  database {info.database}")
        for proc in cluster.processes:
            port = f" port {proc.port}" if proc.port else ""
            state = f"{health[proc.name]}, " if health else ""
            print(
                f"  {proc.name:<9} {proc.role:<9} pid {proc.pid}{port}, {state}log {proc.log_path}"
            )
    if info.auth_file:
        print(f"  clients need the auth string: export FLEET_AUTH_FILE={info.auth_file}")
    print(f"export PREFECT_API_URL={info.api_url}")


def _up(args: argparse.Namespace) -> int:
    if args.port is not None and not 0 < args.port < 65536:
        print(f"fleet: error: --port {args.port}: must be 1-65535", file=sys.stderr)
        return 2
    if args.replicas is not None and args.replicas < 1:
        print(f"fleet: error: --replicas {args.replicas}: must be at least 1", file=sys.stderr)
        return 2
    if args.replicas is not None and args.database_url:
        print(
            "fleet: error: --database-url with --replicas: not supported (it runs its own "
            "PostgreSQL)",
            file=sys.stderr,
        )
        return 2
    from fleet.core.server_db import sqlite_revision

    _migrate_registry(args)  # before the server starts: a registry out of reach starts nothing
    home = server.server_home(args.state_dir)
    sqlite = not args.database_url and args.replicas is None
    before = sqlite_revision(home) if sqlite else None
    started_at = time.monotonic()
    info, started = server.server_up(
        args.state_dir,
        port=args.port,
        ui=not args.no_ui,
        auth_file=args.auth_file,
        database_url=args.database_url,
        replicas=args.replicas,
        timeout=args.timeout,
    )
    if started:
        what = f"Prefect servers ({args.replicas} replicas)" if args.replicas else "Prefect server"
        print(f"{what} started in {time.monotonic() - started_at:.1f} s")
        after = sqlite_revision(home) if sqlite else None
        if before is not None and after is not None and after != before:
            print(f"  database upgraded by Prefect's migrations: revision {before} -> {after}")
    else:
        print("Prefect server already running")
        # Several servers: start again the members that stopped (a killed replica, ...).
        for proc in server.restart_members(args.state_dir, timeout=args.timeout):
            print(f"  restarted {proc.name} (pid {proc.pid})")
    _print_info(info, server.cluster_record(args.state_dir))
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
    cluster = server.cluster_record(args.state_dir)
    info = server.server_down(args.state_dir)
    if info is None:
        print(f"no Prefect server running (state {server.server_dir(args.state_dir)})")
    elif cluster is not None:
        count = len(cluster.processes)
        print(f"Prefect servers stopped ({count} processes, {cluster.replicas} replicas)")
    else:
        print(f"Prefect server stopped (pid {info.pid}, {info.api_url})")
    return 0


def _status(args: argparse.Namespace) -> int:
    info = server.server_status(args.state_dir)
    cluster = server.cluster_record(args.state_dir)
    processes = server.cluster_status(cluster) if cluster is not None else None
    if args.json:
        doc: dict[str, object] = {"running": info is not None, **(asdict(info) if info else {})}
        if cluster is not None:
            doc["replicas"] = cluster.replicas
            doc["processes"] = processes
        print(json.dumps(doc))
    elif info is None and cluster is None:
        print(f"no Prefect server running (state {server.server_dir(args.state_dir)})")
    elif info is None:
        print("Prefect servers not answering through the load balancer:")
        for proc in processes or []:
            print(f"  {proc['name']:<9} {proc['role']:<9} pid {proc['pid']:<8} {proc['health']}")
    else:
        print(f"Prefect server running since {time.ctime(info.started_at)}")
        _print_info(info, cluster, {p["name"]: p["health"] for p in processes or []})
        down = [p["name"] for p in processes or [] if p["health"] != "healthy"]
        if down:
            print(f"  not healthy: {', '.join(down)}; `fleet server up` starts stopped ones again")
    return 0 if info is not None else EXIT_NOT_RUNNING
