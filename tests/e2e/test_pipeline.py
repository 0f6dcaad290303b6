"""Pipelined batch lanes (`flows.pipeline`) on a timed emulated resort: one lock per lane, a lane's
moves back to back in one `move-sequence` run, the next run queued while one moves, a waiting
scheduler served within one operation, nothing left queued after a failure."""

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


def _steps(report: Any) -> list[tuple[float, float]]:
    """(start, end) of each operation's move (epoch s), in plan order."""
    return [(r.result["started_at"], r.result["finished_at"]) for r in report.results]


def _lane(fleet, hotels: str) -> tuple[Any, list[tuple[Any, dict[str, float]]]]:
    """A batch of activations of `hotels` on the resort, from A, all Completed in plan order;
    its report and its device runs (each with its state timestamps)."""
    client = FleetClient(fleet.inventory_path)
    client.activate_hotel(R, "A")
    report = client.batch(_ops(hotels), max_concurrency=2)
    assert [r.state for r in report.results] == ["Completed"] * len(hotels), report.failed
    assert [r.result["hotel"] for r in report.results] == list(hotels)
    return report, _runs(list(dict.fromkeys(r.flow_run_id for r in report.results)))


def test_a_lane_keeps_one_lock_and_runs_its_moves_back_to_back_in_one_run(fleet) -> None:
    hotels = "BCDABC"
    since = time.time()
    report, runs = _lane(fleet, hotels)
    assert len(runs) == 1, "a lane's consecutive moves run in one device run"
    (run, _), *_ = runs
    assert run.parameters["moves"] == [{"action": "activate_hotel", "hotel": h} for h in hotels]
    for (_, end), (start, _) in itertools.pairwise(_steps(report)):
        assert start >= end, "a move started before the one before it ended"
    assert _moving_goals(fleet, since) == [], "a goal was written while the motor moved"


def test_a_long_lane_queues_its_next_run_while_one_moves(fleet, monkeypatch) -> None:
    from flows import pipeline

    monkeypatch.setattr(pipeline, "MAX_SEQUENCE_MOVES", 3)  # 7 moves: runs of 3, 3 and 1
    since = time.time()
    report, runs = _lane(fleet, "BCDABCD")
    assert [len(run.parameters["moves"]) for run, _ in runs] == [3, 3, 1]
    assert len({run.parameters["lease"] for run, _ in runs}) == 1, "one lock for the lane"
    for (before_run, before), (run, _) in itertools.pairwise(runs):
        assert run.parameters["after"] == str(before_run.id)
        assert run.created.timestamp() < before["COMPLETED"], (
            f"run {run.name} was created only after the run before it ended"
        )
    for (_, end), (start, _) in itertools.pairwise(_steps(report)):
        assert start >= end, "a move started before the one before it ended"
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
    steps = _steps(report)
    started_meanwhile = [
        hotels[i] for i, (start, _) in enumerate(steps) if called < start < waited["RUNNING"]
    ]
    # the one moving when it asked, and at most two whose start raced the waiter's own parent
    # run, its first lock request and announcement, and the agent's last check of the waiters
    assert len(started_meanwhile) <= 3, started_meanwhile
    after = [start for start, _ in steps if start > waited["RUNNING"]]
    assert after, "the waiter was served only after the whole batch"
    assert len({run.id for run, _ in batch_runs}) >= 2, "the lane's run yielded to the waiter"
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
