"""The fault suite's probes (tests/e2e/test_chaos_*.py): pointing at and restarting its own Prefect
server (the `chaos_server` fixture, tests/e2e/conftest.py), background moves with a fault injected
mid-way, and readers of what the server holds (device runs, lock slots, run states).

Each fault test states its bound as the timeout it waits with (never as a speed assertion) and
prints what it measured (`measured`: `chaos-measure: ...`, shown with `pytest -s`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resort_common import names
from tests.support.fleet_harness import Fleet
from tests.support.prefect_server import PrefectServer
from tests.support.waiting import wait_for

__all__ = [
    "FINAL",
    "LEASE",
    "LONG_OUTAGE",
    "REPOSSESSOR",
    "fault_mid_move",
    "in_background",
    "kill_parent_holding_lock",
    "lock_slots",
    "measured",
    "move_under_way",
    "point_at",
    "queue_runs",
    "read_run",
    "restart_server",
    "run_state",
    "status",
]

FINAL = {"Completed", "Failed", "Crashed", "Cancelled"}
#: Prefect's minimum lease; a killed parent's slot frees after it plus the repossessor loop
LEASE = 60.0
#: seconds the server stays away in the long-outage test: longer than Prefect's event subscriber
#: keeps reconnecting (10 attempts, 1 s apart after the first two), which ended a parent's wait
LONG_OUTAGE = 15.0
REPOSSESSOR = 15.0
REPO = Path(__file__).resolve().parents[2]


def measured(what: str, value: float, bound: float) -> None:
    """Print one measurement next to its bound (collected for the README)."""
    print(f"chaos-measure: {what} = {value:.1f} s (bound {bound:.0f} s)")


# --- a private server that can be restarted --------------------------------------------------


def point_at(api_url: str | None, home: str | None, retries: str | None) -> None:
    """Point this process's Prefect settings (and `os.environ`) at a server; None unsets."""
    from prefect.context import refresh_global_settings_context

    for key, value in (
        ("PREFECT_API_URL", api_url),
        ("PREFECT_HOME", home),
        ("PREFECT_CLIENT_MAX_RETRIES", retries),
    ):
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    refresh_global_settings_context()


def restart_server(server: PrefectServer, down_for: float = 0.0) -> float:
    """Stop the server, wait `down_for` s, start it again on the same port and database; seconds
    it was down."""
    from fleet.core import server as fleet_server

    down = time.monotonic()
    server.stop()
    time.sleep(down_for)
    server.process = fleet_server.start_server_process(server.env, server.log_path)
    fleet_server.wait_healthy(server.api_url, server.process, server.log_path, 120)
    return time.monotonic() - down


# --- helpers over the real fleet -------------------------------------------------------------


def status(fleet: Fleet, name: str) -> Any:
    from fleet.core.status import read_status

    return {s.name: s for s in read_status(fleet.inventory)}[name]


def move_under_way(
    client: Any, emu: Any, name: str
) -> tuple[float, threading.Thread, dict[str, Any]]:
    """From home, start a 179-degree move in the background; return once the carousel turns.

    Returns the time before the move (for `queue_runs`), the thread and its outcome dict.
    """
    client.go_home(name)
    since = time.time()
    thread, outcome = in_background(lambda: client.move_to_angle(name, 179.0))
    wait_for(lambda: emu.stats()["moving"], 30, 0.02, "move started")
    return since, thread, outcome


def fault_mid_move(
    client: Any, emu: Any, name: str, kind: str, timeout: float = 60.0
) -> tuple[float, BaseException | None]:
    """`move_under_way`, inject `kind` into the emulator, wait for the move's parent to return.

    Returns the time before the move (for `queue_runs`) and the error the parent raised.
    """
    since, thread, outcome = move_under_way(client, emu, name)
    emu.fault(kind)
    thread.join(timeout)
    assert not thread.is_alive(), f"parent still waiting {timeout:g} s after the {kind}"
    return since, outcome.get("error")


def in_background(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `fn` on a thread; the dict gets `result` or `error` (and `ended`, monotonic)."""
    outcome: dict[str, Any] = {}

    def main() -> None:
        try:
            outcome["result"] = fn()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            outcome["ended"] = time.monotonic()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    return thread, outcome


def queue_runs(fleet: Fleet, resorts: list[str], since: float) -> list[Any]:
    """Device flow runs of the resorts' queues created after `since` (epoch seconds)."""
    from datetime import UTC, datetime

    from prefect import get_client
    from prefect.client.schemas.filters import WorkQueueFilter, WorkQueueFilterName

    queues = [names.work_queue_name(fleet.inventory.resort(r)) for r in resorts]
    after = datetime.fromtimestamp(since, UTC)

    async def read() -> list[Any]:
        runs: list[Any] = []
        async with get_client() as client:
            while True:
                page = await client.read_flow_runs(
                    work_queue_filter=WorkQueueFilter(name=WorkQueueFilterName(any_=queues)),
                    limit=200,
                    offset=len(runs),
                )
                runs.extend(page)
                if len(page) < 200:
                    break
        return [r for r in runs if r.created is not None and r.created >= after]

    return asyncio.run(read())


def read_run(run_id: str) -> Any:
    """One flow run as the server has it now."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def lock_slots(resorts: list[str]) -> dict[str, int]:
    """Active slots of each resort's lock (0 = free)."""
    from prefect import get_client

    async def read() -> dict[str, int]:
        async with get_client() as client:
            return {
                r: int(
                    (
                        await client.read_global_concurrency_limit_by_name(names.lock_name(r))
                    ).active_slots
                )
                for r in resorts
            }

    return asyncio.run(read())


def run_state(flow_run_id: Any) -> Any:
    """A flow run's state as the server has it now."""
    from prefect import get_client

    async def read() -> Any:
        async with get_client() as client:
            return (await client.read_flow_run(flow_run_id)).state

    return asyncio.run(read())


def kill_parent_holding_lock(
    fleet: Fleet,
    name: str,
    script: str,
    directory: Path,
    env: dict[str, str],
    before_kill: Callable[[Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A parent flow in a process of its own, killed -9 mid-move on `name` while it holds the
    lock; then one try (1 s) of another scheduler to take the lock.

    Args:
        script: the parent's source; it gets the inventory path and `name` as arguments.
        env: the parent's environment (its Prefect API URL).
        before_kill: called with the lock's holder record just before the kill (its result is
            merged into the returned dict).

    Returns:
        since (epoch before the parent started), killed (monotonic), killed_at (epoch), busy
        (the `DeviceBusyError` of the other scheduler, or None), run_id (the parent's run).
    """
    from fleet.client import FleetClient
    from fleet.core import locks
    from fleet.core.errors import DeviceBusyError

    FleetClient(fleet.inventory_path).go_home(name)
    since = time.time()
    path = directory / "parent.py"
    path.write_text(script)
    proc = subprocess.Popen(
        [sys.executable, str(path), str(fleet.inventory_path), name],
        stdout=(directory / "parent.log").open("wb"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        start_new_session=True,
    )
    extra: dict[str, Any] = {}
    try:

        def holding() -> Any:
            holder = asyncio.run(locks.read_holder(name))
            return holder if holder and holder.pid == proc.pid else None

        holder = wait_for(holding, 60, 0.1, "parent holds the lock")
        wait_for(lambda: fleet.emulators[name].stats()["moving"], 30, 0.02, "move started")
        if before_kill is not None:
            extra = before_kill(holder)
        os.killpg(proc.pid, signal.SIGKILL)
        killed, killed_at = time.monotonic(), time.time()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    busy: Exception | None = None
    try:
        FleetClient(fleet.inventory_path, lock_timeout=1.0).activate_hotel(name, "B")
    except DeviceBusyError as exc:
        busy = exc
    return {
        "since": since,
        "killed": killed,
        "killed_at": killed_at,
        "busy": busy,
        "run_id": holder.run_id,
        "holder": holder,
        **extra,
    }
