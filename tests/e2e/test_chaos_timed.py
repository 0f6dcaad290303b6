"""Fault suite, timed fleet: kill an agent or a parent, unplug and overload a resort mid-move,
take the server away for longer than the event stream retries; every run ends final, none is lost.

`ch` (class `TestTimedFleet`): three resorts with timed motion (90 deg/s, so a 179 deg move takes
~2 s and a fault can land in the middle of it), real agent processes with pty emulators, against
this module's own Prefect server (SQLite, filesystem lease storage; one test restarts it on the
same port and database: `tests.support.chaos`).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.chaos import (
    LEASE,
    LONG_OUTAGE,
    REPOSSESSOR,
    fault_mid_move,
    kill_parent_holding_lock,
    lock_slots,
    measured,
    move_under_way,
    queue_runs,
    read_run,
    restart_server,
    run_state,
    status,
)
from tests.support.fleet_harness import Fleet, start_fleet
from tests.support.prefect_server import PrefectServer
from tests.support.waiting import wait_for

# timeouts cover the class fixtures (fleet start-up, the killed parent) and the stated bounds
pytestmark = [pytest.mark.chaos, pytest.mark.orchestration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]


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
    name = "ch-b"
    directory = Path(tmp_path_factory.mktemp("killed-parent"))
    killed = kill_parent_holding_lock(
        timed, name, PARENT.format(lease=LEASE), directory, dict(os.environ)
    )
    return {"name": name, **killed}


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
        try:
            since, error = fault_mid_move(client, emu, name, "unplug")
            assert isinstance(error, DispatchError), error
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
        since, error = fault_mid_move(client, emu, name, "overload")
        assert isinstance(error, DispatchError), error
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
