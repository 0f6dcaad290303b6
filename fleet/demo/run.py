"""The demo (`make demo`): a local Prefect server, an emulated fleet and a lab-scheduler scenario.

    python -m fleet.demo --inventory inventory/demo.yaml     # make demo
    python -m fleet.demo --down                              # make demo-down

1. Migrates the plate registry (as `fleet server up` does; the inventory's, by default an SQLite
   file in the state directory), starts (or reuses) the local Prefect server with SQLite and the
   UI (`fleet.core.server`),
   validates and provisions the inventory (`fleet.core.provision`), starts one `device-agent run`
   subprocess per resort (each starts its own pty emulator; logs and pids under `<state>/demo/`)
   and waits until every agent reports online (`fleet.demo.processes`).
2. Runs the scenario through the scheduler API (`fleet.client`, real parent flows in this process,
   each a tracked flow run): a batch of hotel activations across the fleet (by name and by
   selector) with live progress; a reservation held across two steps while a second scheduler
   waits for the resort; an emergency stop during a move (`fleet.core.estop`), the refused next
   move, `estop-clear` and a good move; three plates stored with a simulated arm confirming each
   hand-off, one retrieved, the occupancy printed (`fleet.demo.plates`). It prints a final table
   and writes `<state>/demo/report.json`.
3. Prints the Prefect UI address. On a terminal it keeps everything running until Ctrl-C; otherwise
   (CI) it stops the agents (SIGTERM: they drain) and the server it started at the end.

The state directory is `--state-dir`, else `$FLEET_STATE_DIR`, else `./.fleet-state`. The
emulators' links and the agents' own state follow the inventory's `serial_port` paths (for
`inventory/demo.yaml`: `<repo>/.fleet-state/demo/`); a test copies the inventory beside its own
state directory. Exit codes: 0 every step as expected, 1 a step failed unexpectedly, 2 bad
inventory or arguments, 3 no server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fleet.core.errors import FleetError, InventoryError, ServerError, ServerUnavailableError
from fleet.demo.processes import (
    DEMO_DIR,
    STATE_FILE,
    DemoState,
    is_live,
    relative,
    start_agents,
    stop_demo,
    wait_online,
)
from fleet.demo.scenario import Console, Row, format_table, run_scenario

__all__ = ["main", "run_demo"]

REPORT_FILE = "report.json"
ONLINE_TIMEOUT = 180.0  # seconds for every agent to come online (cold imports on a busy Pi/CI)


# --------------------------------------------------------------------------- entry point


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fleet.demo",
        description="Local Prefect server + emulated fleet + a lab-scheduler scenario.",
    )
    parser.add_argument(
        "--inventory", default="inventory/demo.yaml", help="fleet inventory (emulated resorts)"
    )
    parser.add_argument(
        "--state-dir", help="state directory (default $FLEET_STATE_DIR or ./.fleet-state)"
    )
    parser.add_argument(
        "--down", action="store_true", help="stop what a previous demo left running, then exit"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--no-wait", action="store_true", help="stop everything at the end even on a terminal"
    )
    mode.add_argument(
        "--keep",
        action="store_true",
        help="leave server and agents running and exit (stop them with --down)",
    )
    parser.add_argument("--debug", action="store_true", help="show Prefect's console logs")
    return parser


def _prepare_env(state: Path, debug: bool) -> None:
    """Process environment for the demo and its agents; set before Prefect is imported."""
    from fleet.core.server import ENV_STATE_DIR

    os.environ[ENV_STATE_DIR] = str(state)
    os.environ["PREFECT_HOME"] = str(state / DEMO_DIR / "prefect-home")
    os.environ.setdefault("DO_NOT_TRACK", "1")  # like the server's analytics: off, no notice
    if not debug:  # run logs still go to the server (the UI); the console shows our lines
        os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "CRITICAL"


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _wait_for_ctrl_c(procs: dict[str, Any], console: Console) -> None:
    reported: set[str] = set()
    while True:
        time.sleep(1.0)
        for name, proc in procs.items():
            if name not in reported and proc.poll() is not None:
                reported.add(name)
                console.line(f"agent {name} exited with {proc.returncode} (see its log)")


def _write_report(
    path: Path, rows: Sequence[Row], info: Any, record: DemoState, elapsed: float
) -> None:
    server = {"pid": info.pid, "create_time": info.create_time} if info else None
    report = {
        "ok": all(r.ok for r in rows),
        "rows": [{**asdict(r), "ok": r.ok} for r in rows],
        "api_url": info.api_url if info else None,
        "ui_url": info.ui_url if info else None,
        "elapsed": round(elapsed, 1),
        "processes": {
            "server": server if record.server_started else None,
            "agents": list(record.agents.values()),
            "emulators": record.emulators,
        },
    }
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


def _print_statuses(inv: Any, console: Console) -> None:
    from fleet.core.status import read_free_rooms, read_status

    rows, no_rooms = read_free_rooms(inv, read_status(inv))
    for s in rows:
        where = f"{s.position:.1f} deg" if s.position is not None else "?"
        flags = ", ".join(f for f, on in (("e-stopped", s.estopped), ("faulted", s.faulted)) if on)
        rooms = f", {s.rooms_free}/{s.rooms_total} rooms free" if s.rooms_total else ""
        console.line(
            f"  {s.name}: {'online' if s.online else 'OFFLINE'}, at {where} "
            f"(hotel {s.active_hotel or '-'}){rooms}{', ' + flags if flags else ''}"
        )
    if no_rooms:
        console.line(f"  (free rooms unknown: {no_rooms})")


def run_demo(args: argparse.Namespace, inv: Any, state: Path, console: Console) -> int:
    """Start the fleet, run the scenario, report; stop what it started unless kept running."""
    from fleet.core.plates.config import migrate_registry
    from fleet.core.provision import provision
    from fleet.core.server import api_settings, server_up

    demo_dir = state / DEMO_DIR
    demo_dir.mkdir(parents=True, exist_ok=True)
    state_path = demo_dir / STATE_FILE
    previous = DemoState.load(state_path)
    if previous is not None and any(is_live(r) for r in previous.agents.values()):
        console.line("a previous demo's agents still run: stopping them first")
        stop_demo(state, console, stop_server=False)
    record = DemoState(inventory=str(Path(inv.path).resolve()))
    record.server_started = bool(previous and previous.server_started)
    interactive = sys.stdin.isatty() and not args.no_wait and not args.keep
    info = None
    procs: dict[str, Any] = {}
    began = time.monotonic()
    try:
        console.line(asyncio.run(migrate_registry(inv, state)).describe())  # as `fleet server up`
        console.line(f"state directory {state}; starting the local Prefect server (SQLite, UI)")
        info, started = server_up(state, ui=True)
        record.server_started = record.server_started or started
        record.save(state_path)
        console.line(
            f"Prefect server {'started' if started else 'already running'}: {info.api_url} "
            f"(log {relative(info.log_path)})"
        )
        os.environ["PREFECT_API_URL"] = info.api_url
        with api_settings(inv, state=state):
            plan = provision(inv)
            console.line(f"provisioned fleet {inv.fleet.name}: {plan.summary()}")
            procs = start_agents(inv, record, demo_dir, console)

            async def fleet_main() -> list[Row]:
                await wait_online(inv, procs, record, console, ONLINE_TIMEOUT)
                record.save(state_path)
                return await run_scenario(inv, console, info.ui_url if info else None)

            rows = asyncio.run(fleet_main())
            console.line("== fleet status ==")
            _print_statuses(inv, console)
        console.raw("\n" + format_table(rows) + "\n")
        failed = [r for r in rows if not r.ok]
        expected = sum(r.expected_failure and r.ok for r in rows)
        console.line(
            f"{len(rows) - len(failed)} of {len(rows)} operations as intended "
            f"({expected} intentional e-stop failure{'s' if expected != 1 else ''})"
            + (f"; {len(failed)} UNEXPECTED" if failed else "")
        )
        _write_report(demo_dir / REPORT_FILE, rows, info, record, time.monotonic() - began)
        if info.ui_url:
            console.line(f"Prefect UI: {info.ui_url}  (flow runs: {info.ui_url}/runs)")
            console.line(f"same server for the `fleet` CLI: export PREFECT_API_URL={info.api_url}")
        else:
            console.line("this Prefect server runs without its UI (`fleet server up` without --ui)")
        if args.keep:
            console.line("left running; stop with `make demo-down` (python -m fleet.demo --down)")
        elif interactive:
            console.line("the fleet keeps running: press Ctrl-C to stop agents and server")
            with contextlib.suppress(KeyboardInterrupt):
                _wait_for_ctrl_c(procs, console)
            console.raw("")
        return 1 if failed else 0
    finally:
        if not args.keep:
            with contextlib.suppress(KeyboardInterrupt):
                stop_demo(state, console, stop_server=record.server_started)
                if not record.server_started and info is not None:
                    console.line("the server was already running before the demo: left up")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m fleet.demo`: see the module docstring; returns the exit code."""
    args = _parser().parse_args(argv)
    from fleet.core.server import state_dir

    state = state_dir(args.state_dir)
    console = Console()
    _prepare_env(state, args.debug)
    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C stops the demo in order, also when started with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if args.down:
            if not stop_demo(state, console, stop_server=True):
                console.line(f"nothing to stop (state directory {state})")
            return 0
        from fleet.core.inventory import load_inventory

        inv = load_inventory(args.inventory)
        if inv.fleet.api_url:
            raise InventoryError(
                [
                    f"{args.inventory}: fleet.api_url: the demo runs its own local server; "
                    "remove api_url (use the `fleet` commands against a shared server)"
                ]
            )
        return run_demo(args, inv, state, console)
    except InventoryError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"{problem}\n")
        return 2
    except ServerUnavailableError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 3
    except (FleetError, ServerError) as exc:
        if args.debug:
            raise
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: stopped the demo\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
