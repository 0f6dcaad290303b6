"""The fleet's safety guarantees end to end (README "Safety"): a real Prefect server, a real agent
and an emulator started on its own (`device-agent emulate`), whose own word (its control socket
and write log) is what the tests believe, never the agent's report.

One resort, `sf-a`, turning at 60 deg/s (180 deg in 3 s).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fleet_harness import Fleet, start_fleet
from tests.support.waiting import wait_for

pytestmark = pytest.mark.orchestration

R = "sf-a"
SPEED = 60.0
_REPO = Path(__file__).resolve().parents[2]
_DEVICE_AGENT = str(Path(sys.executable).with_name("device-agent"))


@pytest.fixture(scope="module")
def lab(prefect_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = start_fleet(
        tmp_path_factory.mktemp("safety"), "sf", count=1, instant=False, speed=SPEED
    )
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
def client(lab: Fleet) -> Any:
    from fleet.client import FleetClient

    return FleetClient(lab.inventory_path, lock_timeout=60)


def _emu(lab: Fleet) -> Any:
    return lab.emulators[R]


def _submit(flow: str, **parameters: Any) -> Any:
    """A device run created directly on the resort's deployment (no parent flow)."""
    from prefect.deployments import run_deployment

    return run_deployment(f"{flow}/{R}", parameters=parameters, timeout=0, as_subflow=False)


def _final(run: Any, timeout: float = 60.0) -> Any:
    from prefect.flow_runs import wait_for_flow_run
    from prefect.utilities.asyncutils import run_coro_as_sync

    return run_coro_as_sync(wait_for_flow_run(run.id, timeout=int(timeout)))


def _goal_writes(lab: Fleet) -> list[dict[str, Any]]:
    return [w for w in _emu(lab).writes() if w["name"] == "goal_position"]


def _restart_agent(lab: Fleet, *, kill: bool = False) -> subprocess.Popen[bytes]:
    """Stop the agent (SIGTERM, or SIGKILL) and start a new one on the same emulator."""
    old = lab.agents[R]
    if old.poll() is None:
        (old.kill if kill else old.terminate)()
        old.wait(60)
    return lab.restart_agent(R)


@contextlib.contextmanager
def _holding_the_lock() -> Iterator[str]:
    """Hold the resort's lock directly (no selection: it works on an e-stopped resort too)."""
    from prefect.utilities.asyncutils import run_coro_as_sync

    from fleet.core import locks
    from resort_common import names

    held = run_coro_as_sync(locks.acquire(names.lock_name(R), timeout=60, resort=R))
    try:
        yield str(held.lease_id)
    finally:
        run_coro_as_sync(locks.release(held))


def _status(lab: Fleet) -> Any:
    from fleet.core.status import read_status

    return {s.name: s for s in read_status(lab.inventory)}[R]


def _move_in_background(lab: Fleet, angle: float, lease: str) -> Any:
    run = _submit("move-to-angle", angle=angle, lease=lease)
    wait_for(lambda: _emu(lab).stats()["moving"], 30, 0.02, "the carousel turning")
    return run


# -- the lock: the agent enforces it ---------------------------------------------------------------


def test_a_device_run_without_a_live_lease_of_the_lock_moves_nothing(
    lab: Fleet, client: Any
) -> None:
    client.go_home(R)
    goals = len(_goal_writes(lab))

    bare = _final(_submit("activate-hotel", hotel="C"))  # `prefect deployment run` by hand
    assert bare.state.is_failed()
    # a refusal, not a timeout (a TimeoutError subclass made Prefect call it "TimedOut")
    assert bare.state.name == "Failed" and "timeout" not in bare.state.message, bare.state
    assert (
        "LeaseError" in bare.state.message and "no lease of lock resort:sf-a" in bare.state.message
    )

    with client.reserve(R) as reservation:  # someone else holds the resort (arm inside)
        forged = _final(_submit("activate-hotel", hotel="C", lease=str(uuid.uuid4())))
        assert forged.state.is_failed() and "does not hold lock resort:sf-a" in forged.state.message
        assert len(_goal_writes(lab)) == goals  # the motor saw no goal
        mine = _final(_submit("activate-hotel", hotel="B", lease=reservation.lease_id))
        assert mine.state.is_completed(), mine.state.message  # the holder's own lease works
        stale = reservation.lease_id
    late = _final(_submit("activate-hotel", hotel="D", lease=stale))  # a child of a gone parent
    assert late.state.is_failed() and "LeaseError" in late.state.message
    assert [w["value"] for w in _goal_writes(lab)[goals:]] == [1024]  # only hotel B
    assert client.activate_hotel(R, "C")["hotel"] == "C"  # parent flows carry their lease


def _sequence_rows(run: Any) -> list[dict[str, Any]]:
    from prefect.utilities.asyncutils import run_coro_as_sync

    from flows.results import aread_sequence_result

    return run_coro_as_sync(aread_sequence_result(run.id))


def test_a_move_sequence_stops_before_its_next_move_once_its_lease_is_gone(
    lab: Fleet, client: Any
) -> None:
    client.go_home(R)
    angles = (90.0, 0.0, 90.0, 0.0, 90.0, 0.0)  # 1.5 s each
    moves = [{"action": "move_to_angle", "angle": a} for a in angles]
    with _holding_the_lock() as lease:
        run = _submit("move-sequence", moves=moves, lease=lease)
        wait_for(lambda: _emu(lab).stats()["moving"], 30, 0.02, "the carousel turning")
    released = len(_goal_writes(lab))  # the lock is given back while the first move runs
    final = _final(run)
    assert final.state.is_failed() and "LeaseError" in final.state.message, final.state
    rows = _sequence_rows(final)
    assert [r["state"] for r in rows] == ["Completed"] * (len(rows) - 1) + ["Failed"], rows
    assert "LeaseError" in rows[-1]["error"] and len(rows) < len(moves)
    # the move under way at the release ends; no later one starts but one checked just before
    assert len(_goal_writes(lab)) - released <= 1


def test_a_queued_move_sequence_runs_only_behind_a_complete_one(lab: Fleet, client: Any) -> None:
    client.go_home(R)
    goals = len(_goal_writes(lab))
    move = [{"action": "move_to_angle", "angle": 30.0}]
    with _holding_the_lock() as lease:
        bad = _final(_submit("move-sequence", moves=[*move, {"action": "spin"}], lease=lease))
        assert bad.state.is_failed() and "moves[1].action: 'spin' is not one of" in (
            bad.state.message
        )
        # queued behind a run this agent never ran: it yields every move
        orphan = _final(_submit("move-sequence", moves=move, lease=lease, after=str(uuid.uuid4())))
        assert orphan.state.is_completed() and _sequence_rows(orphan) == []
        assert len(_goal_writes(lab)) == goals, "a refused sequence moved the motor"
        first = _final(_submit("move-sequence", moves=move, lease=lease))
        second = _final(
            _submit(
                "move-sequence",
                moves=[{"action": "go_home"}],
                lease=lease,
                after=str(first.id),
                yield_first=True,
            )
        )
        behind_orphan = _final(
            _submit("move-sequence", moves=move, lease=lease, after=str(orphan.id))
        )
    assert [r["state"] for r in _sequence_rows(first)] == ["Completed"]
    assert [r["state"] for r in _sequence_rows(second)] == ["Completed"]
    assert _sequence_rows(behind_orphan) == []
    assert len(_goal_writes(lab)) == goals + 2


def test_ctl_cannot_open_the_port_the_agent_holds(lab: Fleet) -> None:
    agent = lab.agents[R]
    proc = subprocess.run(
        [_DEVICE_AGENT, "ctl", "--port", str(_emu(lab).link), "position"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=_REPO,
        check=False,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"is held by pid {agent.pid}" in proc.stderr
    assert "device-agent run" in proc.stderr and f"--device {R}" in proc.stderr


# -- the e-stop fails closed -----------------------------------------------------------------------


def test_estop_stays_engaged_through_unplug_replug_and_an_agent_restart(
    lab: Fleet, client: Any
) -> None:
    emu = _emu(lab)
    client.activate_hotel(R, "B")
    assert emu.stats()["torque"] is True  # holding hotel B
    acks = client.estop([R], reason="test: hand in the carousel")
    assert acks[0].confirmed
    stopped_at = time.time()
    assert emu.stats()["torque"] is False
    latch_file = lab.inventory_path.parent.parent / ".fleet-state" / "sf" / R / "estop-latch.json"
    assert json.loads(latch_file.read_text())["estopped"] is True

    emu.fault("unplug")
    time.sleep(0.3)
    emu.fault("replug")
    health = client.health([R])[R]  # the agent finds its old port dead: link error, reconnect
    assert health["state"] != "Completed" and "PortLostError" in (health["error"] or ""), health
    wait_for(lambda: _status(lab).connected, 20, 0.1, "agent reconnected")
    assert emu.stats()["torque"] is False

    _restart_agent(lab)
    assert emu.stats()["torque"] is False
    assert _status(lab).estopped
    with _holding_the_lock() as lease:  # even with the lock (selection bypassed): refused
        refused = _final(_submit("activate-hotel", hotel="C", lease=lease))
    assert refused.state.is_failed() and "EmergencyStopError" in refused.state.message
    ons = [
        w
        for w in emu.writes()
        if w["name"] == "torque_enable" and w["value"] == 1 and w["t"] > stopped_at
    ]
    assert ons == []  # the servo's own log: torque never came back on
    assert emu.stats()["torque"] is False

    client.estop_clear([R])
    assert json.loads(latch_file.read_text())["estopped"] is False
    assert client.activate_hotel(R, "C")["hotel"] == "C"
    assert emu.stats()["torque"] is True


def test_an_agent_killed_mid_move_leaves_a_stopped_motor(lab: Fleet, client: Any) -> None:
    emu = _emu(lab)
    client.go_home(R)
    with client.reserve(R) as reservation:
        _move_in_background(lab, 179.0, reservation.lease_id)
        wait_for(lambda: emu.stats()["moving"], 30, 0.02, "move started")
        agent = lab.agents[R]
        agent.kill()
        killed = time.monotonic()
        agent.wait(10)
        last = emu.stats()["position"]
        stopped_after = None
        while time.monotonic() - killed < 3.0:
            time.sleep(0.02)
            now = emu.stats()
            if now["position"] == last and not now["moving"]:
                stopped_after = time.monotonic() - killed
                break
            last = now["position"]
        assert stopped_after is not None and stopped_after <= 1.0, stopped_after
        assert emu.stats()["position_deg"] < 120.0  # stopped, not finished at 179
        assert emu.stats()["bus_watchdog"] == -1  # the servo's watchdog stopped it
    _restart_agent(lab, kill=True)
    assert client.activate_hotel(R, "B")["hotel"] == "B"  # the new agent clears the watchdog


# -- jams, power blips -----------------------------------------------------------------------------


def test_a_jam_fails_the_run_within_half_a_second_naming_where_it_stopped(
    lab: Fleet, client: Any
) -> None:
    emu = _emu(lab)
    client.go_home(R)
    with client.reserve(R) as reservation:
        run = _move_in_background(lab, 179.0, reservation.lease_id)
        wait_for(lambda: emu.stats()["moving"], 30, 0.02, "move started")
        jammed = time.time()
        emu.fault("jam")
        final = _final(run)
    assert final.state.is_failed()
    assert "JamError" in final.state.message and "jammed at" in final.state.message
    offs = [
        w["t"]
        for w in emu.writes()
        if w["name"] == "torque_enable" and w["value"] == 0 and w["t"] >= jammed
    ]
    assert offs and offs[0] - jammed < 0.5, (offs, final.state.message, emu.writes()[-6:], jammed)
    assert emu.stats()["torque"] is False
    emu.fault("clear")
    assert client.activate_hotel(R, "A")["hotel"] == "A"


def test_after_a_power_blip_the_next_move_keeps_the_configured_speed(
    lab: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    from fleet.cli import main as fleet_main

    emu = _emu(lab)
    assert fleet_main(["home", R, "--inventory", str(lab.inventory_path)]) == 0
    emu.fault("power-cycle")  # servo supply off and on; USB stays up
    assert emu.stats()["profile_velocity"] == 0  # "no profile": a full-speed step
    wait_for(lambda: not emu.stats()["silent"], 10, 0.05, "servo booted")
    capsys.readouterr()
    code = fleet_main(["activate", R, "C", "--json", "--inventory", str(lab.inventory_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(out.strip().splitlines()[-1])["result"]
    assert result["hotel"] == "C"
    assert result["duration"] == pytest.approx(180.0 / SPEED, rel=0.15)  # the driver's duration
    profile = emu.stats()["last_profile"]
    assert profile["velocity"] == round(SPEED / 1.374)  # configured, read back before the move


# -- no server at start ----------------------------------------------------------------------------


@pytest.mark.slow
def test_an_agent_that_cannot_reach_the_server_comes_up_with_torque_off(
    tmp_path: Path, emulator: Any
) -> None:
    from fleet.core import server as fleet_server
    from fleet.core.inventory import load_inventory
    from fleet.core.provision import provision
    from tests.support.prefect_server import PrefectServer

    port = fleet_server.free_port()
    api = f"http://127.0.0.1:{port}/api"
    emu = emulator(tmp_path / "tty-su-a")
    held = subprocess.run(
        [_DEVICE_AGENT, "ctl", "--port", str(emu.link), "move", "30"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert held.returncode == 0 and emu.stats()["torque"] is True  # energised before the agent
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        f"fleet: {{name: su, work_pool: su-resorts, api_url: '{api}'}}\n"
        "defaults: {emulate: true, hotels: [A, B, C, D], speed: 90, acceleration: 0}\n"
        "resorts:\n  - {name: su-a, host: 127.0.0.1, serial_port: tty-su-a}\n"
    )
    log = tmp_path / "agent.log"
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    agent = subprocess.Popen(
        [_DEVICE_AGENT, "run", "--inventory", str(inventory), "--device", "su-a"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=_REPO,
        start_new_session=True,
    )
    server = None
    try:
        wait_for(lambda: emu.stats()["torque"] is False, 30, 0.2, "torque off without a server")
        assert agent.poll() is None, log.read_text()
        assert "cannot read the fleet's e-stop latch" in log.read_text()

        home = tmp_path / "server"
        home.mkdir()
        server_env = fleet_server.server_env(home, port)
        process = fleet_server.start_server_process(server_env, home / "server.log")
        server = PrefectServer(api, home, process, home / "server.log", server_env)
        fleet_server.wait_healthy(api, process, home / "server.log", 90)
        with fleet_server.prefect_environment(
            {"PREFECT_API_URL": api, "PREFECT_HOME": str(home / "client")}
        ):
            inv = load_inventory(inventory)
            provision(inv)
            from fleet.client import FleetClient

            wait_for(lambda: "online" in _status_text(inv), 90, 0.5, "agent online")
            assert FleetClient(inv, lock_timeout=60).activate_hotel("su-a", "C")["hotel"] == "C"
            assert emu.stats()["torque"] is True
    finally:
        agent.terminate()
        try:
            agent.wait(30)
        except subprocess.TimeoutExpired:
            agent.kill()
        if server is not None:
            server.stop()


def _status_text(inv: Any) -> str:
    from fleet.core.status import read_status

    try:
        return " ".join("online" if s.online else "offline" for s in read_status(inv))
    except Exception:
        return ""


def test_the_emergency_stop_answers_while_a_move_runs(lab: Fleet, client: Any) -> None:
    """The stop still preempts a running move (a thread of the agent, not its queue)."""
    emu = _emu(lab)
    client.go_home(R)
    errors: list[BaseException] = []

    def move() -> None:
        try:
            client.move_to_angle(R, 179.0)
        except BaseException as exc:
            errors.append(exc)

    mover = threading.Thread(target=move)
    mover.start()
    wait_for(lambda: emu.stats()["moving"], 30, 0.02, "moving")
    acks = client.estop([R], reason="test")
    assert acks[0].confirmed and emu.stats()["torque"] is False
    mover.join(60)
    assert errors and "EmergencyStopError" in str(errors[0])
    client.estop_clear([R])
    assert client.go_home(R)["hotel"] == "A"
