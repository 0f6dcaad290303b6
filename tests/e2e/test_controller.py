"""`fleet controller` (`fleet.client.controller`): parent runs started through Prefect, run in the
controller's process, several at once; drained on SIGTERM; cancelled; marked Crashed when the
controller is killed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from resort_common import names
from tests.support.cli import run_fleet
from tests.support.controller import running_controller
from tests.support.fleet_harness import start_fleet

pytestmark = pytest.mark.orchestration

SLOW = "ct-c"  # 30 deg/s: a 90 degree activation moves for about three seconds


@pytest.fixture(scope="module")
def fleet(prefect_server, tmp_path_factory):
    fleet = start_fleet(
        Path(tmp_path_factory.mktemp("controller")),
        "ct",
        3,
        instant=False,
        speed=270.0,
        timed={SLOW: 30.0},
        parent_heartbeat=5.0,  # the watchdog marks a silent parent Crashed after 20 s
    )
    yield fleet
    fleet.stop()


def _start(fleet, resort: str, hotel: str) -> Any:
    from prefect.deployments import run_deployment

    deployment = names.parent_deployment_name("fleet-activate-hotel", fleet.inventory)
    return run_deployment(
        deployment, parameters={"resort": resort, "hotel": hotel}, timeout=0, as_subflow=False
    )


def _final(run_id: UUID, timeout: float = 120.0) -> Any:
    from prefect import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.is_final():
                return run
            assert time.monotonic() < deadline, f"run {run.name} is still {run.state.name}"
            time.sleep(0.2)


def _states(run_id: UUID) -> dict[str, float]:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        first: dict[str, float] = {}
        for s in sorted(client.read_flow_run_states(run_id), key=lambda s: s.timestamp):
            first.setdefault(s.type.value, s.timestamp.timestamp())
        return first


def _device_run_running(fleet, resort: str, since: float, timeout: float = 60.0) -> None:
    """Wait until a device run on `resort` created after `since` is Running."""
    from prefect import get_client
    from prefect.client.schemas.filters import WorkQueueFilter, WorkQueueFilterName

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                work_queue_filter=WorkQueueFilter(
                    name=WorkQueueFilterName(any_=[names.work_queue_name(resort)])
                ),
                limit=5,
            )
            if any(
                r.created.timestamp() >= since and r.state is not None and r.state.is_running()
                for r in runs
            ):
                return
            time.sleep(0.1)
    raise AssertionError(f"no device run on {resort} started")


def test_one_controller_runs_several_parents_at_once_in_its_own_process(fleet) -> None:
    log = fleet.inventory_path.parent / "controller-several.log"
    with running_controller(fleet.inventory_path, log, poll_seconds=None):
        time.sleep(3.0)  # the controller subscribed
        runs = [_start(fleet, r, h) for r, h in (("ct-a", "B"), ("ct-b", "C"), (SLOW, "B"))]
        finals = [_final(run.id) for run in runs]
        assert [r.state.name for r in finals] == ["Completed"] * 3, [r.state for r in finals]
        spans = [_states(run.id) for run in runs]
    text = log.read_text(errors="replace")
    for run in runs:
        assert f"running {run.name}" in text  # in the controller's process, not a subprocess
    # the slow resort's parent was running while the other two started and ended
    assert max(s["RUNNING"] for s in spans) < min(s["COMPLETED"] for s in spans), spans


def test_sigterm_lets_the_parent_under_way_finish(fleet) -> None:
    log = fleet.inventory_path.parent / "controller-drain.log"
    with running_controller(fleet.inventory_path, log, poll_seconds=None) as controller:
        time.sleep(3.0)
        since = time.time()
        run = _start(fleet, SLOW, "C")
        _device_run_running(fleet, SLOW, since)
        os.killpg(controller.pid, signal.SIGTERM)
        assert controller.wait(60) == 0, log.read_text(errors="replace")[-2000:]
        final = _final(run.id, 10.0)
    assert final.state.is_completed(), final.state
    assert "stopping: 1 run(s) under way" in log.read_text(errors="replace")


def test_a_cancelled_parent_ends_cancelled(fleet) -> None:
    from prefect import get_client
    from prefect.states import Cancelling

    log = fleet.inventory_path.parent / "controller-cancel.log"
    with running_controller(fleet.inventory_path, log, poll_seconds=None):
        time.sleep(3.0)
        since = time.time()
        run = _start(fleet, SLOW, "D")
        _device_run_running(fleet, SLOW, since)
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run.id, Cancelling(message="test: cancel the parent"))
            # the engine reports its cancelled task Crashed; the controller's Cancelled may land
            # just before or after that report, and the controller corrects a Crashed one
            deadline = time.monotonic() + 60.0
            state = client.read_flow_run(run.id).state
            while not (state is not None and state.is_cancelled()):
                assert time.monotonic() < deadline, state
                time.sleep(0.2)
                state = client.read_flow_run(run.id).state


def test_a_killed_controller_leaves_no_parent_running(fleet) -> None:
    log = fleet.inventory_path.parent / "controller-kill.log"
    with running_controller(fleet.inventory_path, log, poll_seconds=None) as controller:
        time.sleep(3.0)
        since = time.time()
        run = _start(fleet, SLOW, "A")
        _device_run_running(fleet, SLOW, since)
        os.killpg(controller.pid, signal.SIGKILL)
        controller.wait(10)
    final = _final(run.id, 90.0)  # the parent watchdog: no heartbeat for 4 x 5 s
    assert final.state.is_crashed(), final.state


def test_a_bad_limit_is_one_line_and_exit_2(fleet) -> None:
    code, _, err = run_fleet(
        ["controller", "--inventory", str(fleet.inventory_path), "--limit", "0"]
    )
    assert code == 2
    assert err.strip().splitlines() == [err.strip().splitlines()[-1]]
    assert "--limit must be at least 1, got 0" in err and "Traceback" not in err
