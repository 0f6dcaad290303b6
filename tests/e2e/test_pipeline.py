"""Pipelined batch lanes (`flows.pipeline`) on a timed emulated resort: one lock per lane, the next
run queued while one moves, a waiting scheduler served within one operation, nothing left queued
after a failure."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fleet.client import FleetClient
from resort_common import names
from tests.support.fleet_harness import start_fleet

pytestmark = pytest.mark.orchestration

R = "pl-a"
TICKS_PER_DEG = 4096 / 360.0


@pytest.fixture(scope="module")
def fleet(prefect_server, tmp_path_factory):
    # 180 deg/s: a 90 degree activation moves for about half a second
    fleet = start_fleet(Path(tmp_path_factory.mktemp("pipeline")), "pl", 2, timed={R: 180.0})
    yield fleet
    fleet.stop()


def _runs(ids: list[str]) -> list[tuple[Any, dict[str, float]]]:
    """Each flow run with the first timestamp (epoch s) of each of its state types."""
    from uuid import UUID

    from prefect import get_client

    out = []
    with get_client(sync_client=True) as client:
        for run_id in ids:
            run = client.read_flow_run(UUID(run_id))
            first: dict[str, float] = {}
            for s in sorted(client.read_flow_run_states(run.id), key=lambda s: s.timestamp):
                first.setdefault(s.type.value, s.timestamp.timestamp())
            out.append((run, first))
    return out


def _moving_goals(fleet, since: float) -> list[dict[str, Any]]:
    return [
        w
        for w in fleet.emulators[R].writes()
        if w["t"] >= since and w["name"] == "goal_position" and w["torque"] and w["moving"]
    ]


def _ops(hotels: str) -> list[dict[str, Any]]:
    return [{"resort": R, "action": "activate_hotel", "hotel": h} for h in hotels]


def test_a_lane_keeps_one_lock_and_queues_the_next_run_while_one_moves(fleet) -> None:
    client = FleetClient(fleet.inventory_path)
    client.activate_hotel(R, "A")
    hotels = "BCDABC"
    since = time.time()
    report = client.batch(_ops(hotels), max_concurrency=2)
    assert [r.state for r in report.results] == ["Completed"] * len(hotels), report.failed
    assert [r.result["hotel"] for r in report.results] == list(hotels)
    runs = _runs([r.flow_run_id for r in report.results])
    leases = {run.parameters["lease"] for run, _ in runs}
    assert len(leases) == 1, f"one lock for the whole lane, got leases {leases}"
    for (_, before), (run, _) in itertools.pairwise(runs):
        assert run.created.timestamp() < before["COMPLETED"], (
            f"run {run.name} was created only after the run before it ended"
        )
    assert _moving_goals(fleet, since) == [], "a goal was written while the motor moved"


def test_a_waiting_scheduler_gets_the_resort_within_one_operation(fleet) -> None:
    client = FleetClient(fleet.inventory_path)
    client.activate_hotel(R, "A")
    hotels = "BCDABCDABCDA"
    batch: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: batch.update(report=client.batch(_ops(hotels), max_concurrency=2))
    )
    thread.start()
    time.sleep(2.5)  # the lane is under way, with most of its operations still to go
    called = time.time()
    waiter = FleetClient(fleet.inventory_path).move_to_angle(R, 45.0)
    answered = time.time()
    thread.join(timeout=120)
    report = batch["report"]
    assert [r.state for r in report.results] == ["Completed"] * len(hotels), report.failed
    (_, waited), *_ = _runs([waiter["flow_run_id"]])
    batch_runs = _runs([r.flow_run_id for r in report.results])
    started_meanwhile = [
        run.name for run, first in batch_runs if called < first["RUNNING"] < waited["RUNNING"]
    ]
    # the one moving when it asked, the one already queued behind it, and at most one whose
    # start raced the waiter's own parent run and lock request
    assert len(started_meanwhile) <= 3, started_meanwhile
    after = [run for run, first in batch_runs if first["RUNNING"] > waited["RUNNING"]]
    assert after, "the waiter was served only after the whole batch"
    assert answered - called < 10.0


def test_with_fail_fast_nothing_starts_after_a_failure_and_nothing_stays_queued(fleet) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState
    from prefect.client.schemas.filters import FlowRunFilterStateType as StateTypes
    from prefect.client.schemas.objects import StateType

    client = FleetClient(fleet.inventory_path)
    client.activate_hotel(R, "A")
    hotels = "BCDABC"
    batch: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: batch.update(
            report=client.batch(_ops(hotels), max_concurrency=1, fail_fast=True)
        )
    )
    thread.start()
    time.sleep(1.5)
    try:
        client.estop([R], reason="test: pipelined lane")
        thread.join(timeout=120)
    finally:
        client.estop_clear([R])
    report = batch["report"]
    states = [r.state for r in report.results]
    done = states.count("Completed")
    # the operations before the e-stop completed, the one it hit failed, nothing started after
    assert states[:done] == ["Completed"] * done, states
    assert states[done] in ("Failed", "Cancelled", "Crashed"), states
    assert states[done + 1 :] == ["Skipped"] * (len(hotels) - done - 1), states
    with get_client(sync_client=True) as prefect:
        left = prefect.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=StateTypes(any_=[StateType.SCHEDULED, StateType.PENDING])
                )
            )
        )
    assert [r.name for r in left if r.work_queue_name == names.work_queue_name(R)] == []
