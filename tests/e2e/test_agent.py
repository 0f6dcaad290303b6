"""The device agent as a real subprocess against a real Prefect server and the pty emulator.

One agent serves resort `resort-a` of a one-resort fleet for the whole module; later tests kill
and restart it. Motion is timed (not instant): the carousel turns at 90 deg/s. The module holds
the resort's lock (a reservation) and passes its lease to the motion and maintenance runs it
submits directly, as a parent flow would.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.agents import AgentProcess, run_agent, start_agent
from tests.support.emulator import control, write_log
from tests.support.inventories import write_inventory
from tests.support.waiting import wait_for

pytestmark = pytest.mark.orchestration

RESORT = "resort-a"
SPEED = 90.0  # deg/s (inventory)


class Fleet:
    """The module's fleet: inventory, settings, agent, and how to run device subflows."""

    def __init__(self, directory: Path, api_url: str) -> None:
        from fleet.core.inventory import load_inventory
        from flows.agent_settings import agent_settings_for

        self.directory = directory
        self.inventory_path = write_inventory(
            directory / "inventory.yaml",
            "e2e",
            [RESORT],
            defaults={"speed": SPEED, "acceleration": 0, "move_timeout": 60},
            api_url=api_url,
        )
        self.inv = load_inventory(self.inventory_path)
        self.settings = agent_settings_for(self.inv, RESORT)
        self.link = Path(self.settings.device.serial_port)
        assert self.settings.emulator is not None and self.settings.emulator.log_file
        self.write_log = Path(self.settings.emulator.log_file)
        self.agent: AgentProcess | None = None
        self.starts = 0
        self.reservation: Any = None

    def reserve(self) -> None:
        """Hold the resort's lock for the module (its lease goes with direct motion runs)."""
        from prefect.utilities.asyncutils import run_coro_as_sync

        from fleet.core import locks
        from resort_common import names

        self.reservation = run_coro_as_sync(
            locks.acquire(names.lock_name(RESORT), timeout=60, resort=RESORT)
        )

    def release(self) -> None:
        from prefect.utilities.asyncutils import run_coro_as_sync

        from fleet.core import locks

        if self.reservation is not None:
            run_coro_as_sync(locks.release(self.reservation))
            self.reservation = None

    def start(self, settings_file: Path | None = None) -> AgentProcess:
        self.starts += 1
        log = self.directory / f"agent-{self.starts}.log"
        if settings_file is None:
            self.agent = start_agent(self.inventory_path, RESORT, log)
        else:
            self.agent = run_agent(["--settings", str(settings_file)], log, self.link)
        self.wait_online()
        return self.agent

    def status(self) -> Any:
        from fleet.core.status import read_status

        return read_status(self.inv)[0]

    def wait_online(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            assert self.agent is not None
            if self.agent.proc.poll() is not None:
                raise AssertionError(f"agent exited:\n{self.agent.output()[-3000:]}")
            doc = self._status_doc()  # this agent's own document (not a killed one's)
            if doc.get("pid") != self.agent.proc.pid or not doc.get("events_connected"):
                return False
            s = self.status()
            return s.online and s.connected and s.worker_status == "ONLINE"

        wait_for(ready, timeout, 0.25, "agent online")

    def _status_doc(self) -> dict[str, Any]:
        from prefect import get_client

        async def read() -> dict[str, Any]:
            async with get_client() as client:
                v = await client.read_variable_by_name(self.settings.status_variable)
                return dict(v.value) if v is not None and isinstance(v.value, dict) else {}

        return asyncio.run(read())

    def submit(self, flow: str, **parameters: Any) -> Any:
        from prefect.deployments import run_deployment

        from resort_common import names

        if flow in names.LEASED_FLOWS and self.reservation is not None:
            parameters.setdefault("lease", str(self.reservation.lease_id))
        return run_deployment(
            f"{flow}/{RESORT}", parameters=parameters, timeout=0, as_subflow=False
        )

    def wait(self, flow_run: Any, timeout: float = 60.0) -> Any:
        from prefect.flow_runs import wait_for_flow_run
        from prefect.utilities.asyncutils import run_coro_as_sync

        return run_coro_as_sync(wait_for_flow_run(flow_run.id, timeout=timeout))

    def run(self, flow: str, timeout: float = 60.0, **parameters: Any) -> Any:
        return self.wait(self.submit(flow, **parameters), timeout)

    def read_run(self, flow_run_id: Any) -> Any:
        from prefect import get_client

        async def read() -> Any:
            async with get_client() as client:
                return await client.read_flow_run(flow_run_id)

        return asyncio.run(read())

    def emulator(self) -> dict[str, Any]:
        return control(self.link, {"stats": True})


@pytest.fixture(scope="module")
def fleet_env(prefect_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    directory = tmp_path_factory.mktemp("e2e-agent")
    env = Fleet(directory, prefect_server.api_url)
    from fleet.core.provision import provision

    provision(env.inv)
    env.reserve()
    env.start()
    try:
        yield env
    finally:
        env.release()
        if env.agent is not None:
            env.agent.terminate(60)
        # an emulator adopted after kill -9 is stopped by the last agent; make sure
        try:
            pid = env.emulator().get("pid")
        except OSError:
            pid = None
        if pid:
            import os
            import signal

            os.kill(int(pid), signal.SIGTERM)


def _move_seconds(start: float, goal: float) -> float:
    diff = abs(goal - start) % 360.0
    return min(diff, 360.0 - diff) / SPEED


def _idle_doc(fleet_env: Fleet) -> dict[str, Any]:
    """The agent's status document once it is idle and its run counter has settled.

    The agent publishes asynchronously; a document read right after a run ended can predate it.
    """
    docs: list[dict[str, Any]] = []

    def settled() -> bool:
        doc = fleet_env._status_doc()
        docs.append(doc)
        if doc.get("current_run") is not None or len(docs) < 2:
            return False
        return docs[-2].get("runs_executed") == doc.get("runs_executed")

    wait_for(settled, 10, 0.3, "agent idle")
    return docs[-1]


def _claimed_since(fleet_env: Fleet, before: dict[str, Any], runs: int) -> int:
    """Runs claimed from events since `before`, once `runs` more runs were executed."""

    def counted() -> bool:
        doc = fleet_env._status_doc()
        return doc.get("runs_executed", 0) - before.get("runs_executed", 0) >= runs

    wait_for(counted, 10, 0.1, "status published")
    after = _idle_doc(fleet_env)
    return after["runs_claimed_from_events"] - before.get("runs_claimed_from_events", 0)


def test_port_stays_open_across_ten_runs(fleet_env: Fleet) -> None:
    from flows.results import read_device_result

    opens_before = fleet_env.emulator()["opens"]
    finals = []
    for i in range(10):
        flow = "activate-hotel" if i % 3 == 0 else "request-position"
        params = {"hotel": "BCDA"[i % 4]} if flow == "activate-hotel" else {}
        finals.append(fleet_env.run(flow, **params))
    assert [r.state.type.value for r in finals] == ["COMPLETED"] * 10, [
        r.state.message for r in finals
    ]
    assert fleet_env.emulator()["opens"] == opens_before
    result = read_device_result(finals[-1].id)
    assert result["resort"] == RESORT and result["action"] == "activate-hotel"
    assert result["hotel"] == "C"  # i = 9 -> "BCDA"[1]
    wait_for(lambda: fleet_env.status().active_hotel == "C", 10, 0.1, "status published")


def test_runs_are_claimed_from_their_scheduled_events_and_marked_as_the_agents(
    fleet_env: Fleet,
) -> None:
    before = _idle_doc(fleet_env)
    finals = [fleet_env.run("request-position") for _ in range(5)]
    assert all(r.state.is_completed() for r in finals), [r.state for r in finals]
    # every run came from its Scheduled event (the fallback poll is 15 s; none was needed)
    assert _claimed_since(fleet_env, before, 5) == 5
    # worker markers are written after the start; orphan recovery relies on them
    for final in finals:
        wait_for(
            lambda run_id=final.id: fleet_env.read_run(run_id).infrastructure_pid is not None,
            10,
            0.1,
            "worker markers",
        )
        run = fleet_env.read_run(final.id)
        assert run.infrastructure_pid.startswith(f"plate-resort:agent-{RESORT}:")
        assert run.labels.get("prefect.worker.name") == f"agent-{RESORT}"


def test_runs_submitted_back_to_back_start_in_submission_order(fleet_env: Fleet) -> None:
    from flows.results import read_device_result

    submitted = [fleet_env.submit("request-position") for _ in range(4)]
    finals = [fleet_env.wait(run) for run in submitted]
    assert all(r.state.is_completed() for r in finals), [r.state for r in finals]
    starts = [float(read_device_result(r.id)["started_at"]) for r in finals]
    assert starts == sorted(starts)


def test_runs_queued_behind_a_move_are_claimed_when_it_ends_without_a_queue_poll(
    fleet_env: Fleet,
) -> None:
    from flows.results import read_device_result

    assert fleet_env.run("go-home").state.is_completed()
    before = _idle_doc(fleet_env)
    move = fleet_env.submit("move-to-angle", angle=179.0)  # ~2 s at 90 deg/s
    wait_for(lambda: fleet_env.emulator()["moving"], 20, 0.05, "move started")
    queued = [fleet_env.submit("request-position") for _ in range(3)]  # events while busy
    finals = [fleet_env.wait(run) for run in [move, *queued]]
    assert all(r.state.is_completed() for r in finals), [r.state for r in finals]
    starts = [float(read_device_result(r.id)["started_at"]) for r in finals]
    assert starts == sorted(starts)
    # the move from its event, each queued run by the claim made when the previous slot freed
    assert _claimed_since(fleet_env, before, 4) == 4


def test_a_drained_queue_holds_new_runs_until_resume_then_starts_them_in_order(
    fleet_env: Fleet,
) -> None:
    from fleet.core.provision import drain, resume
    from flows.results import read_device_result

    drain(fleet_env.inv, RESORT, timeout=30)
    try:
        held = [fleet_env.submit("request-position") for _ in range(3)]
        # Their Scheduled events reach the agent within milliseconds; a claim that ignored the
        # pause would have started them long before this.
        time.sleep(2.0)
        states = [fleet_env.read_run(r.id).state.type.value for r in held]
        assert states == ["SCHEDULED"] * 3
    finally:
        resume(fleet_env.inv, RESORT)
    # Resuming wakes the agent (queue-ready event); the fallback poll (15 s) is not needed.
    finals = [fleet_env.wait(r, timeout=12) for r in held]
    assert all(r.state.is_completed() for r in finals), [r.state for r in finals]
    starts = [float(read_device_result(r.id)["started_at"]) for r in finals]
    assert starts == sorted(starts)


def test_estop_during_move_stops_motor_and_latches(fleet_env: Fleet) -> None:
    from fleet.core.estop import clear_estop, estop

    assert fleet_env.run("go-home").state.is_completed()
    move = fleet_env.submit("move-to-angle", angle=179.0)  # ~2 s at 90 deg/s
    wait_for(lambda: fleet_env.emulator()["moving"], 20, 0.05, "move started")
    started = time.time()
    acks = estop(fleet_env.inv, [RESORT], "test stop")
    assert [a.resort for a in acks] == [RESORT]
    would_end = started + _move_seconds(0.0, 179.0)
    offs = [
        w
        for w in write_log(fleet_env.write_log)
        if w["name"] == "torque_enable" and w["value"] == 0 and w["t"] >= started - 0.5
    ]
    assert offs, "no torque-off write in the emulator log"
    assert offs[0]["t"] < would_end
    assert fleet_env.emulator()["torque"] is False
    final = fleet_env.wait(move)
    assert final.state.is_failed()
    assert "EmergencyStopError" in (final.state.message or "")
    refused = fleet_env.run("go-home")
    assert refused.state.is_failed() and "estop-clear" in (refused.state.message or "")
    wait_for(lambda: fleet_env.status().estopped, 10, 0.1, "estopped status")
    # non-motion flows still work while stopped
    assert fleet_env.run("request-position").state.is_completed()
    clear_estop(fleet_env.inv, [RESORT])
    assert fleet_env.run("go-home").state.is_completed()
    wait_for(lambda: not fleet_env.status().estopped, 10, 0.1, "estop cleared in status")


def test_emergency_stop_flow_sets_the_latch_variable_like_fleet_estop(fleet_env: Fleet) -> None:
    from prefect.variables import Variable

    from fleet.core.estop import clear_estop
    from resort_common import names

    final = fleet_env.run("emergency-stop", reason="flow stop")
    assert final.state.is_completed(), final.state
    # without the variable the agent's next latch read ("cleared" by the test before) would
    # release this stop, and a restarted agent would come up unstopped
    latch = Variable.get(names.estop_variable_name(RESORT))
    assert latch["estopped"] is True and latch["reason"] == "flow stop" and latch["command_id"]
    wait_for(lambda: fleet_env.status().estopped, 10, 0.1, "estopped status")
    refused = fleet_env.run("go-home")
    assert refused.state.is_failed() and "estop-clear" in (refused.state.message or "")
    clear_estop(fleet_env.inv, [RESORT])
    assert fleet_env.run("go-home").state.is_completed()


def test_cancel_of_running_move_halts_motor(fleet_env: Fleet) -> None:
    from prefect import get_client
    from prefect.states import Cancelling

    assert fleet_env.run("go-home").state.is_completed()
    move = fleet_env.submit("move-to-angle", angle=179.0)
    wait_for(lambda: fleet_env.emulator()["moving"], 20, 0.05, "move started")
    asked = time.time()

    async def cancel() -> None:
        async with get_client() as client:
            await client.set_flow_run_state(move.id, Cancelling(message="test cancel"))

    asyncio.run(cancel())
    final = fleet_env.wait(move)
    assert final.state.is_cancelled(), final.state
    goals = [
        w
        for w in write_log(fleet_env.write_log)
        if w["name"] == "goal_position" and w["t"] >= asked
    ]
    assert goals, "halt wrote no goal_position"
    stats = fleet_env.emulator()
    assert not stats["moving"] and stats["torque"] is True
    assert stats["position_deg"] < 178.0  # stopped short of the target
    assert fleet_env.run("go-home").state.is_completed()


def test_fleet_status_json(fleet_env: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    from fleet.cli import main

    def published() -> bool:  # the agent publishes asynchronously after the last test's runs
        s = fleet_env.status()
        return s.online and s.connected and not s.estopped and not s.moving

    wait_for(published, 10, 0.1, "idle status published")
    assert main(["status", "--json", "--inventory", str(fleet_env.inventory_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [RESORT]
    row = rows[0]
    assert row["online"] and row["connected"] and not row["estopped"]
    assert row["queue_paused"] is False and row["worker_status"] == "ONLINE"
    assert row["position"] == pytest.approx(0.0, abs=1.0)
    assert main(["status", "--inventory", str(fleet_env.inventory_path)]) == 0
    assert RESORT in capsys.readouterr().out


def test_unplug_fails_runs_then_replug_resumes(
    fleet_env: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    from fleet.cli import main as fleet_main

    inventory = ["--inventory", str(fleet_env.inventory_path)]
    control(fleet_env.link, {"fault": "unplug"})
    try:
        failed = fleet_env.run("request-position")
        assert failed.state.is_failed()
        wait_for(lambda: fleet_env.status().faulted, 20, 0.2, "faulted status")
        refused = fleet_env.run("go-home")
        assert refused.state.is_failed()
        assert "not connected" in (refused.state.message or "")
        # `fleet status --wait` gives up on a resort whose link is down, naming it
        assert fleet_main(["status", RESORT, "--wait", "1", *inventory]) == 1
        assert f"fleet: not ready after 1 s: {RESORT}" in capsys.readouterr().err
    finally:
        control(fleet_env.link, {"fault": "replug"})
    # ... and returns once it is back
    assert fleet_main(["status", RESORT, "--wait", "30", *inventory]) == 0
    assert "not ready" not in capsys.readouterr().err
    wait_for(lambda: fleet_env.status().connected, 30, 0.2, "reconnected")
    assert fleet_env.run("activate-hotel", hotel="C").state.is_completed()


def test_kill_9_then_restart_recovers(fleet_env: Fleet) -> None:
    assert fleet_env.agent is not None
    assert fleet_env.run("go-home").state.is_completed()
    move = fleet_env.submit("move-to-angle", angle=179.0)
    wait_for(lambda: fleet_env.emulator()["moving"], 20, 0.05, "move started")
    fleet_env.agent.kill()
    unmarked = _claimed_without_markers(fleet_env)  # as if killed right after a claim
    fleet_env.start()
    orphan = fleet_env.read_run(move.id)
    assert orphan.state.is_crashed(), orphan.state
    assert fleet_env.read_run(unmarked).state.is_crashed()
    real = fleet_env.emulator()["position_deg"]
    wait_for(lambda: abs((fleet_env.status().position or -999) - real) <= 1.0, 10, 0.1, "position")
    assert fleet_env.run("activate-hotel", hotel="D").state.is_completed()


def _claimed_without_markers(fleet_env: Fleet) -> Any:
    """A run of the resort's queue put in Pending with no worker markers (the agent is down)."""
    from prefect import get_client
    from prefect.states import Pending

    run = fleet_env.submit("request-position")

    async def claim() -> None:
        async with get_client() as client:
            await client.set_flow_run_state(run.id, Pending(), force=True)

    asyncio.run(claim())
    return run.id


def test_sigterm_mid_move_leaves_every_run_final(fleet_env: Fleet) -> None:
    assert fleet_env.agent is not None
    assert fleet_env.agent.terminate(60) == 0
    settings = fleet_env.settings.model_copy(update={"shutdown_grace": 0.3})
    settings_file = fleet_env.directory / "agent-settings.json"
    settings_file.write_text(settings.model_dump_json())
    fleet_env.start(settings_file)
    assert fleet_env.run("go-home").state.is_completed()
    move = fleet_env.submit("move-to-angle", angle=179.0)
    queued = fleet_env.submit("request-position")
    wait_for(lambda: fleet_env.emulator()["moving"], 20, 0.05, "move started")
    stopped_at = time.time()
    assert fleet_env.agent.terminate(60) == 0
    for run_id in (move.id, queued.id):
        state = fleet_env.read_run(run_id).state
        assert state.is_final() or state.is_scheduled(), state
    moved = fleet_env.read_run(move.id).state
    assert moved.is_final() and not moved.is_completed()
    halts = [
        w
        for w in write_log(fleet_env.write_log)
        if w["name"] == "goal_position" and w["t"] >= stopped_at
    ]
    assert halts, "the move was not halted"
    assert not fleet_env.status().online
    fleet_env.agent = None
    fleet_env.start()
    assert fleet_env.wait(queued).state.is_completed()
