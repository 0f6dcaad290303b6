"""`fleet activate|home|move|batch|controller`: motions and batches through the parent flows.

    fleet activate RESORT HOTEL        # e.g. fleet activate resort-a B
    fleet home RESORT
    fleet move RESORT DEG
    fleet batch PLAN [--max-concurrency N] [--fail-fast] [--json]
    fleet controller                   # serve the parent-flow deployments (control pool) and
                                       # keep the fleet overview artifact current

The verbs run the parent flow in this process (a tracked flow run) and print the device result.
The inventory comes from `--inventory FILE`, else `$FLEET_INVENTORY`, else `inventory/demo.yaml`;
the API from `PREFECT_API_URL`, else the inventory's `api_url`, else the local `fleet server`.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from fleet.core.errors import DispatchError, PlanError

__all__ = [
    "add_common_options",
    "load_cli_inventory",
    "number_argument",
    "register",
    "run_single",
]


def add_common_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add `--inventory`, `--lock-timeout` and `--json` (the verbs that run under a lock)."""
    parser.add_argument("--inventory", metavar="FILE", help="inventory (default $FLEET_INVENTORY)")
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds to wait for a busy resort (default 300; exit 4 when exceeded)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def register(subparsers: Any) -> None:
    """Add `activate`, `home`, `move`, `batch` and `controller` to the `fleet` parser."""
    common = add_common_options(argparse.ArgumentParser(add_help=False))

    p = subparsers.add_parser(
        "activate", parents=[common], help="bring a hotel of a resort to the access position"
    )
    p.add_argument("resort", metavar="RESORT")
    p.add_argument("hotel", metavar="HOTEL")
    p.set_defaults(handler=_activate)

    p = subparsers.add_parser("home", parents=[common], help="turn a resort to its home angle")
    p.add_argument("resort", metavar="RESORT")
    p.set_defaults(handler=_home)

    p = subparsers.add_parser("move", parents=[common], help="turn a resort to an angle (deg)")
    p.add_argument("resort", metavar="RESORT")
    p.add_argument("angle", metavar="DEG", type=number_argument("DEG", "degrees"))
    p.set_defaults(handler=_move)

    p = subparsers.add_parser(
        "batch",
        parents=[common],
        help="run a plan of operations across the fleet",
        description="Run PLAN (YAML/JSON `operations:` list): concurrent across resorts, one at "
        "a time per resort; validated before anything is queued.",
    )
    p.add_argument("plan", metavar="PLAN")
    p.add_argument(
        "--max-concurrency",
        type=int,
        default=8,
        metavar="N",
        help="at most N operations at once (default 8)",
    )
    p.add_argument("--fail-fast", action="store_true", help="stop after the first failure")
    p.set_defaults(handler=_batch)

    p = subparsers.add_parser(
        "controller",
        help="serve the parent-flow deployments from the control pool",
        description="Serve the fleet's control pool: parent flows started through Prefect (UI, "
        "schedules, automations, run_deployment) are picked up on their Scheduled event and run "
        "in this process, several at once. SIGTERM lets the runs under way finish, then exits.",
    )
    p.add_argument("--inventory", metavar="FILE", help="inventory (default $FLEET_INVENTORY)")
    p.add_argument("--name", help="worker name (default fleet-controller-<host>)")
    p.add_argument(
        "--limit",
        type=int,
        default=16,
        metavar="N",
        help="at most N parent runs at once (default 16)",
    )
    p.set_defaults(handler=_controller)


def number_argument(name: str, unit: str) -> Callable[[str], float]:
    """An argparse `type=` that reads a float; otherwise `NAME must be a number of UNIT, got ...`.

    The range is checked where the request is validated (one line naming the field).
    """

    def parse(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be a number of {unit}, got {text!r}"
            ) from None

    return parse


def load_cli_inventory(args: argparse.Namespace) -> Any:
    """The inventory named by `--inventory`, `$FLEET_INVENTORY` or the default."""
    from fleet.core.inventory import inventory_path, load_inventory

    return load_inventory(inventory_path(args.inventory))


def _print_result(args: argparse.Namespace, resort: str, result: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps({"resort": resort, "result": result}, default=str))
        return
    parts = [f"{k}={v}" for k, v in result.items()]
    print(f"{resort}: ok {' '.join(parts)}")


def run_single(args: argparse.Namespace, call: str, *params: Any) -> int:
    """Call `FleetClient.<call>(args.resort, *params)` and print its result."""
    from fleet.client import FleetClient
    from fleet.core.server import api_settings

    inv = load_cli_inventory(args)
    client = FleetClient(inv, lock_timeout=args.lock_timeout)
    client.validate(call, args.resort, *params)  # a bad request is refused as such, server or not
    with api_settings(inv), _progress(args, f"{args.resort}: {call.replace('_', ' ')}"):
        try:
            result = getattr(client, call)(args.resort, *params)
        except DispatchError as exc:
            exc.run_url = exc.run_url or _run_url(exc.flow_run_id)
            raise
    _print_result(args, args.resort, result)
    return 0


def _run_url(flow_run_id: str | None) -> str | None:
    """The run's page in the Prefect UI (None without an id or a UI URL)."""
    if not flow_run_id:
        return None
    from prefect.utilities.urls import url_for

    return url_for("flow-run", obj_id=flow_run_id)


@contextlib.contextmanager
def _progress(args: argparse.Namespace, what: str) -> Iterator[None]:
    """On a terminal, `what ... 2.4 s` on stderr while the block runs (waiting counts too)."""
    if args.json or not sys.stderr.isatty():
        yield
        return
    done = threading.Event()
    started = time.monotonic()

    def draw() -> None:
        while not done.wait(0.2):
            sys.stderr.write(f"\r{what} ... {time.monotonic() - started:.1f} s")
            sys.stderr.flush()

    thread = threading.Thread(target=draw, name="fleet-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def _activate(args: argparse.Namespace) -> int:
    return run_single(args, "activate_hotel", args.hotel)


def _home(args: argparse.Namespace) -> int:
    return run_single(args, "go_home")


def _move(args: argparse.Namespace) -> int:
    return run_single(args, "move_to_angle", args.angle)


# --- batch --------------------------------------------------------------------------------------


class _Progress:
    """One status line on stderr, redrawn as operations start and finish (TTY only)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self.states: dict[int, str] = {}
        self._lock = threading.Lock()

    def __call__(self, result: Any) -> None:
        with self._lock:
            self.states[result.index] = result.state
            if not self.enabled:
                return
            done = sum(1 for s in self.states.values() if s not in ("Running", "Pending"))
            running = sum(1 for s in self.states.values() if s == "Running")
            failed = sum(
                1 for s in self.states.values() if s not in ("Running", "Pending", "Completed")
            )
            width = 30
            filled = int(width * done / self.total) if self.total else width
            bar = "#" * filled + "-" * (width - filled)
            line = f"\r[{bar}] {done}/{self.total} done, {running} running, {failed} failed"
            sys.stderr.write(line)
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _table(results: list[Any]) -> str:
    header = ("#", "operation", "resort", "state", "duration", "error")
    rows = [
        (
            str(r.index),
            r.operation,
            r.resort or "-",
            r.state,
            f"{r.duration:.2f} s" if r.duration is not None else "-",
            (r.error or "").splitlines()[0][:80] if r.error else "",
        )
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _batch(args: argparse.Namespace) -> int:
    from fleet.client import FleetClient
    from fleet.core.plan import load_plan, validate_plan
    from fleet.core.server import api_settings

    if args.max_concurrency < 1:
        raise PlanError(f"--max-concurrency: must be at least 1, got {args.max_concurrency}")
    inv = load_cli_inventory(args)
    plan = load_plan(args.plan)
    validate_plan(inv, plan, source=args.plan)  # before any server contact: nothing is queued
    progress = _Progress(len(plan.operations), enabled=sys.stderr.isatty() and not args.json)
    with api_settings(inv):
        client = FleetClient(inv, lock_timeout=args.lock_timeout)
        try:
            report = client.batch(
                plan,
                max_concurrency=args.max_concurrency,
                fail_fast=args.fail_fast,
                on_progress=progress,
            )
        finally:
            progress.close()
    if args.json:
        keys = ("resort", "action", "state", "duration", "error")
        results = [{k: getattr(r, k) for k in keys} for r in report.results]
        print(json.dumps({"results": results}, default=str))
    else:
        print(_table(report.results))
        failed = len(report.failed)
        print(
            f"{len(report.results) - failed} of {len(report.results)} operations completed "
            f"in {report.makespan:.1f} s" + (f"; {failed} did not" if failed else "")
        )
    return 1 if report.failed else 0


# --- controller ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _overview_watcher(inv: Any) -> Iterator[None]:
    """Keep the fleet's overview artifact current from a daemon thread while the block runs."""
    from fleet.core.overview import watch_overview
    from resort_common import names

    stop = threading.Event()
    # the thread sees the API settings of `api_settings(inv)` (they live in context variables)
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run,
        args=(watch_overview, inv, stop),
        name=f"overview-{inv.fleet.name}",
        daemon=True,
    )
    thread.start()
    print(f"keeping the fleet overview artifact {names.overview_artifact_key(inv)} current")
    try:
        yield
    finally:
        stop.set()
        thread.join(5.0)


def _controller(args: argparse.Namespace) -> int:
    import logging
    import socket

    from fleet.client.controller import serve_forever
    from fleet.core.server import api_settings

    if args.limit < 1:
        raise PlanError(f"--limit must be at least 1, got {args.limit}")
    inv = load_cli_inventory(args)
    name = args.name or f"fleet-controller-{socket.gethostname()}"
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log = logging.getLogger("fleet.client.controller")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    with api_settings(inv), _overview_watcher(inv):
        print(
            f"serving parent flows of fleet {inv.fleet.name} from pool "
            f"{inv.fleet.control_pool} as {name}, in this process, up to {args.limit} at once"
        )
        sys.stdout.flush()
        return serve_forever(inv, name=name, limit=args.limit, poll_interval=5.0)
