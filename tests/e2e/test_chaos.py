"""Fault suite: kill, restart, unplug and overload a real fleet; every run ends final, none is lost.

Runs against its own Prefect server (SQLite, filesystem lease storage), because one test restarts
it on the same port and database. Two fleets of real agent processes with pty emulators:

* `ch` (class `TestTimedFleet`): three resorts with timed motion (90 deg/s, so a 179 deg move
  takes ~2 s and a fault can land in the middle of it);
* `cr` (class `TestInstantFleet`): four resorts with instant emulators, for the server restart
  during a batch and the race of 200 parent runs.

Each test states its bound as the timeout it waits with (never as a speed assertion) and prints
what it measured (`chaos-measure: ...`, shown with `pytest -s`); README "Fault suite" quotes them.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from resort_common import names
from tests.support.fleet_harness import Fleet, start_fleet
from tests.support.prefect_server import PrefectServer, start_prefect_server
from tests.support.waiting import wait_for

# timeouts cover the class fixtures (fleet start-up, the killed parent) and the stated bounds
pytestmark = [pytest.mark.chaos, pytest.mark.orchestration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
FINAL = {"Completed", "Failed", "Crashed", "Cancelled"}
#: Prefect's minimum lease; a killed parent's slot frees after it plus the repossessor loop
LEASE = 60.0
#: seconds the server stays away in the long-outage test: longer than Prefect's event subscriber
#: keeps reconnecting (10 attempts, 1 s apart after the first two), which ended a parent's wait
LONG_OUTAGE = 15.0
REPOSSESSOR = 15.0


def measured(what: str, value: float, bound: float) -> None:
    """Print one measurement next to its bound (collected for the README)."""
    print(f"chaos-measure: {what} = {value:.1f} s (bound {bound:.0f} s)")


# --- a private server that can be restarted --------------------------------------------------


def _point_at(api_url: str | None, home: str | None, retries: str | None) -> None:
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


@pytest.fixture(scope="module")
def chaos_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A server of this module's own (restarted by a test); this process points at it."""
    home = Path(tmp_path_factory.mktemp("chaos-server"))
    server = start_prefect_server(home)
    saved = tuple(
        os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_CLIENT_MAX_RETRIES")
    )
    # SQLite answers bursts of concurrent writes (200 racing parents on 2 cores) with 503; the
    # default 5 client retries were exhausted once in ~200 run creations. Agents inherit this.
    _point_at(server.api_url, str(home / "client"), "10")
    try:
        yield server
    finally:
        server.stop()
        _point_at(*saved)


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
    client: Any, emu: Any, name: str, kind: str
) -> tuple[float, threading.Thread, dict[str, Any]]:
    """`move_under_way`, then inject `kind` into the emulator."""
    since, thread, outcome = move_under_way(client, emu, name)
    emu.fault(kind)
    return since, thread, outcome


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
    from prefect import get_client

    async def read() -> Any:
        async with get_client() as client:
            return (await client.read_flow_run(flow_run_id)).state

    return asyncio.run(read())


# --- timed fleet: agent kill, parent kill, unplug, overload ----------------------------------


@pytest.fixture(scope="class")
def timed(chaos_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = start_fleet(
        Path(tmp_path_factory.mktemp("chaos-timed")),
        "ch",
        3,
        instant=False,
        speed=90.0,
        parent_heartbeat=10.0,  # the watchdog closes a dead parent's run 40 s after its last beat
    )
    yield fleet
    fleet.stop()


PARENT = textwrap.dedent(
    """
    import functools, sys
    from fleet.core import locks
    # a real parent flow, with Prefect's minimum lease so the test waits 60 s, not 120 s
    locks.resort_lock = functools.partial(locks.resort_lock, lease_duration={lease})
    from fleet.client import FleetClient
    FleetClient(sys.argv[1]).move_to_angle(sys.argv[2], 179.0)
    """
)


@pytest.fixture(scope="class")
def killed_parent(timed: Fleet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real parent flow on ch-b, killed -9 mid-move while it holds the lock (at class start, so
    the lease runs out while the other tests of the class run)."""
    from fleet.client import FleetClient
    from fleet.core import locks
    from fleet.core.errors import DeviceBusyError

    name = "ch-b"
    directory = Path(tmp_path_factory.mktemp("killed-parent"))
    FleetClient(timed.inventory_path).go_home(name)
    since = time.time()
    script = directory / "parent.py"
    script.write_text(PARENT.format(lease=LEASE))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(timed.inventory_path), name],
        stdout=(directory / "parent.log").open("wb"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
    )
    try:

        def holding() -> Any:
            holder = asyncio.run(locks.read_holder(name))
            return holder if holder and holder.pid == proc.pid else None

        holder = wait_for(holding, 60, 0.1, "parent holds the lock")
        wait_for(lambda: timed.emulators[name].stats()["moving"], 30, 0.02, "move started")
        os.killpg(proc.pid, signal.SIGKILL)
        killed, killed_at = time.monotonic(), time.time()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    busy: Exception | None = None
    try:
        FleetClient(timed.inventory_path, lock_timeout=1.0).activate_hotel(name, "B")
    except DeviceBusyError as exc:
        busy = exc
    return {
        "name": name,
        "since": since,
        "killed": killed,
        "killed_at": killed_at,
        "busy": busy,
        "run_id": holder.run_id,
    }


@pytest.mark.usefixtures("killed_parent")
class TestTimedFleet:
    def test_agent_killed_mid_move_run_ends_final_and_queue_carries_on(self, timed: Fleet) -> None:
        from fleet.client import FleetClient
        from fleet.core.errors import DispatchError

        name = "ch-a"
        client = FleetClient(timed.inventory_path, lock_timeout=120)
        since, thread, outcome = move_under_way(client, timed.emulators[name], name)
        killed, killed_at = time.monotonic(), time.time()
        os.killpg(timed.agents[name].pid, signal.SIGKILL)
        timed.agents[name].wait(10)
        timed.restart_agent(name)
        restarted = time.monotonic() - killed
        # the parent sees its child end (Crashed), waits for the resort to be idle, releases
        bound = timed.inventory.resort(name).move_timeout + 30 + 60
        thread.join(bound)
        assert not thread.is_alive(), f"parent still waiting {bound} s after the kill"
        error = outcome.get("error")
        assert isinstance(error, DispatchError), outcome
        assert error.state == "Crashed" and "restarted while this run was in progress" in str(error)
        crashed = run_state(error.flow_run_id)
        assert crashed.is_crashed(), crashed
        measured("agent kill -9 -> restarted agent online", restarted, 90)
        crashed_after = crashed.timestamp.timestamp() - killed_at
        measured("agent kill -9 -> orphan run Crashed", crashed_after, 90)
        measured("agent kill -9 -> parent returned", outcome["ended"] - killed, bound)
        # the queue carries on: the next activation on the same resort completes
        assert client.activate_hotel(name, "C")["hotel"] == "C"
        runs = queue_runs(timed, [name], since)
        assert len(runs) == 2, [(r.name, r.state_name) for r in runs]
        assert sorted(r.state_name for r in runs) == ["Completed", "Crashed"]
        assert lock_slots([name]) == {name: 0}

    def test_unplug_mid_move_faults_then_replug_resumes(self, timed: Fleet) -> None:
        from fleet.client import FleetClient
        from fleet.core.errors import DeviceSelectionError, DispatchError

        name = "ch-c"
        emu = timed.emulators[name]
        client = FleetClient(timed.inventory_path, lock_timeout=60)
        since, thread, outcome = fault_mid_move(client, emu, name, "unplug")
        try:
            thread.join(60)
            assert not thread.is_alive()
            error = outcome.get("error")
            assert isinstance(error, DispatchError), outcome
            assert error.state == "Failed"
            assert "PortLostError" in str(error) or "CommunicationError" in str(error), error
            wait_for(lambda: status(timed, name).faulted, 30, 0.2, "faulted status")
            refused = rf"resort {name} is not available: faulted \(.*PortLostError"
            with pytest.raises(DeviceSelectionError, match=refused):
                client.activate_hotel(name, "B")
        finally:
            emu.fault("replug")
        replugged = time.monotonic()
        wait_for(lambda: status(timed, name).connected, 60, 0.2, "reconnected")
        measured("replug -> agent connected again", time.monotonic() - replugged, 60)
        assert client.activate_hotel(name, "B")["hotel"] == "B"
        runs = queue_runs(timed, [name], since)
        assert sorted(r.state_name for r in runs) == ["Completed", "Failed"], runs
        assert lock_slots([name]) == {name: 0}

    def test_overload_fails_with_reason_and_reboot_restores(self, timed: Fleet) -> None:
        from fleet.client import FleetClient
        from fleet.core.errors import DispatchError

        name = "ch-c"
        emu = timed.emulators[name]
        client = FleetClient(timed.inventory_path, lock_timeout=60)
        since, thread, outcome = fault_mid_move(client, emu, name, "overload")
        thread.join(60)
        assert not thread.is_alive()
        error = outcome.get("error")
        assert isinstance(error, DispatchError), outcome
        assert error.state == "Failed" and "overload" in str(error).lower(), error
        assert emu.stats()["torque"] is False  # the servo's shutdown left it safe
        # the health path reports the decoded reason
        health = client.health([name])[name]
        assert health["state"] == "Completed", health
        assert "overload" in [e.lower() for e in health["result"]["hardware_errors"]], health
        # the fault is latched in the servo: moves keep failing with the reason until a reboot
        with pytest.raises(DispatchError, match=r"MotorFaultError: .*overload"):
            client.activate_hotel(name, "B")
        # recovery: the fleet-recover parent flow (reboot-resort under the resort's lock)
        rebooted = client.recover(name)
        assert rebooted["ok"] is True and rebooted["hardware_errors"] == [], rebooted
        wait_for(lambda: not status(timed, name).last_error, 30, 0.2, "error cleared in status")
        assert client.activate_hotel(name, "D")["hotel"] == "D"
        runs = queue_runs(timed, [name], since)
        assert all(r.state is not None and r.state.is_final() for r in runs), runs
        assert lock_slots([name]) == {name: 0}

    def test_parent_killed_holding_lock_frees_within_lease(
        self, timed: Fleet, killed_parent: dict[str, Any]
    ) -> None:
        from fleet.client import FleetClient
        from fleet.core import locks

        name = killed_parent["name"]
        # right after the kill the resort was busy, naming the dead parent's run
        assert re.match(rf"resort busy: {name} held by run \S+ \(", str(killed_parent["busy"]))
        bound = LEASE + REPOSSESSOR + 30
        left = bound - (time.monotonic() - killed_parent["killed"])
        patient = FleetClient(timed.inventory_path, lock_timeout=max(left, 1.0))
        assert patient.activate_hotel(name, "B")["hotel"] == "B"
        freed = time.monotonic() - killed_parent["killed"]
        measured("parent kill -9 -> next parent holds the lock", freed, bound)
        # nothing lost: the killed parent's move finished on the agent, the next one ran after it
        device = queue_runs(timed, [name], killed_parent["since"])
        assert sorted(r.state_name for r in device) == ["Completed", "Completed"], device
        assert lock_slots([name]) == {name: 0}
        assert asyncio.run(locks.read_holder(name)) is None
        # and the dead parent's own run was closed by the fleet's watchdog automation
        from fleet.core import watchdog

        bound = watchdog.window(timed.inventory.fleet.parent_heartbeat) + 5 + 30
        crashed = wait_for(
            lambda: (run := read_run(killed_parent["run_id"])).state_name == "Crashed" and run,
            max(bound - (time.monotonic() - killed_parent["killed"]), 1.0),
            0.5,
            "the killed parent's run Crashed by the watchdog",
        )
        assert crashed.state.message == watchdog.CRASH_MESSAGE
        ended = crashed.state.timestamp.timestamp() - killed_parent["killed_at"]
        measured("parent kill -9 -> its run Crashed (watchdog)", ended, bound)

    def test_parent_waits_through_a_server_outage_longer_than_the_event_stream_retries(
        self, timed: Fleet, chaos_server: PrefectServer
    ) -> None:
        """A parent waiting for its device run while the server is away for 15 s gets the
        result: the run went on at the agent, so giving up (and releasing the lock) is wrong."""
        from fleet.client import FleetClient

        name = "ch-c"
        client = FleetClient(timed.inventory_path, lock_timeout=120)
        since, thread, outcome = move_under_way(client, timed.emulators[name], name)
        downtime = restart_server(chaos_server, down_for=LONG_OUTAGE)
        back = time.monotonic()
        bound = timed.inventory.resort(name).move_timeout + 60
        thread.join(bound)
        assert not thread.is_alive(), f"parent still waiting {bound} s after the server came back"
        assert "error" not in outcome, outcome.get("error")
        assert abs(outcome["result"]["position"] - 179.0) < 1.0, outcome["result"]
        measured("server away (long outage)", downtime, LONG_OUTAGE + 120)
        measured("server back -> parent returned the result", outcome["ended"] - back, bound)
        runs = queue_runs(timed, [name], since)
        assert [r.state_name for r in runs] == ["Completed"], runs
        assert lock_slots([name]) == {name: 0}


# --- instant fleet: server restart during a batch, 200 racing parents -----------------------


@pytest.fixture(scope="class")
def instant(
    chaos_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    fleet = start_fleet(Path(tmp_path_factory.mktemp("chaos-instant")), "cr", 4, instant=True)
    yield fleet
    fleet.stop()


class TestInstantFleet:
    def test_server_restart_during_batch_every_operation_final(
        self, instant: Fleet, chaos_server: PrefectServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from fleet.client import FleetClient
        from fleet.core import locks

        # A slot granted while the server goes down can lose its answer: the client retries, the
        # slot stays with the lost lease until it expires. Prefect's minimum lease (60 s, default
        # 120 s) keeps that bound short here.
        short_lease = functools.partial(locks.resort_lock, lease_duration=LEASE)
        monkeypatch.setattr(locks, "resort_lock", short_lease)

        resorts = instant.names
        hotels = "BCDA"
        operations = [
            {"resort": r, "action": "activate_hotel", "hotel": hotels[(step + i) % 4]}
            for step in range(8)
            for i, r in enumerate(resorts)
        ]
        done: list[int] = []
        since = time.time()
        client = FleetClient(instant.inventory_path, lock_timeout=240)
        thread, outcome = in_background(
            lambda: client.batch(
                operations,
                max_concurrency=4,
                on_progress=lambda r: done.append(r.index) if r.state in FINAL else None,
            )
        )
        wait_for(lambda: len(done) >= 6, 120, 0.05, "batch under way")
        downtime = restart_server(chaos_server)
        restarted = time.monotonic()
        returned = LEASE + REPOSSESSOR + 120  # a lost grant's lease, plus the operations
        thread.join(returned)
        assert not thread.is_alive(), f"batch not returned {returned} s after the restart"
        assert "error" not in outcome, outcome.get("error")
        report = outcome["result"]
        assert len(report.results) == len(operations)
        for r in report.results:
            if r.state != "Completed" or (r.duration or 0) > 10:
                print(f"chaos-detail: op {r.index} {r.state} after {r.duration} s: {r.error}")
        # a parent whose wait began or broke while the server was down waits on (flows.waiting)
        assert [r.state for r in report.results] == ["Completed"] * len(operations), report.failed
        measured("server down (restart)", downtime, 120)
        measured("server back -> batch returned", outcome["ended"] - restarted, returned)
        # every device run the batch created ends final; no lock stays held
        bound = LEASE * 2 + REPOSSESSOR + 30

        def settled() -> bool:
            runs = queue_runs(instant, resorts, since)
            return all(r.state is not None and r.state.is_final() for r in runs) and not any(
                lock_slots(resorts).values()
            )

        wait_for(settled, bound, 1.0, "device runs final and locks free")
        settled_after = time.monotonic() - restarted
        measured("server back -> every run final, every lock free", settled_after, bound)
        # and the fleet carries on
        again = client.batch(
            [{"resort": r, "action": "go_home"} for r in resorts], max_concurrency=4
        )
        assert [r.state for r in again.results] == ["Completed"] * len(resorts), again.failed

    def test_200_parents_racing_over_4_resorts_never_overlap(self, instant: Fleet) -> None:
        from fleet.client import AsyncFleetClient

        resorts = instant.names
        client = AsyncFleetClient(instant.inventory_path, lock_timeout=600)
        start = time.time()
        hotels = "BCDA"

        async def one(i: int, gate: asyncio.Semaphore) -> dict[str, Any]:
            async with gate:
                return await client.activate_hotel(resorts[i % 4], hotels[(i // 4) % 4])

        async def race() -> list[dict[str, Any]]:
            gate = asyncio.Semaphore(8)  # two parents per resort in flight: one moves, one waits
            return await asyncio.gather(*(one(i, gate) for i in range(200)))

        began = time.monotonic()
        results = asyncio.run(race())
        measured("200 parents over 4 resorts", time.monotonic() - began, 600)
        assert len(results) == 200
        assert all(r["hotel"] == r["hotel_requested"] for r in results)
        for resort in resorts:
            mine = sorted(
                (r for r in results if r["resort"] == resort), key=lambda r: r["started_at"]
            )
            assert len(mine) == 50
            for before, after in itertools.pairwise(mine):
                assert after["started_at"] >= before["finished_at"], (before, after)
            writes = [
                w
                for w in instant.emulators[resort].writes()
                if w["t"] >= start and w["name"] == "goal_position"
            ]
            assert writes, f"{resort} never moved"
            overlapping = [w for w in writes if w["moving"]]
            assert overlapping == [], f"{resort}: goal written while moving: {overlapping[:3]}"
        assert lock_slots(resorts) == dict.fromkeys(resorts, 0)
