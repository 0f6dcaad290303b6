"""Parent-flow overhead: one hotel activation end to end, and a 100-activation batch on 5 resorts.

Against a fresh local server (SQLite, filesystem leases, 1 s slot-wait cap) with five timed pty
emulators (180 deg/s, rectangular profile) and one real agent each:

* single: `FleetClient.activate_hotel` wall time (parent flow run, selection, lock, dispatch,
  event-driven wait, result) vs the physical move time the driver reported (`duration`), n runs,
  and where the time goes: each phase's median and p95 from the runs' states (`bench.phases`);
* batch: 100 activations spread round-robin over 5 resorts (20 each, consecutive hotels differ)
  with `max_concurrency=5`: makespan vs the busiest resort's summed physical move time, on the
  SQLite server and again on a server backed by a PostgreSQL started for the run
  (`batch_postgres`; skipped with a reason when PostgreSQL cannot start here), with the goals
  the motors saw written while moving (overlapping moves; 0 expected) and the motor's idle time
  between two moves of a resort;
* controller: the same activation started through Prefect (`run_deployment` of the fleet's
  `fleet-activate-hotel` deployment, served by `fleet controller` as deployed): call -> the
  parent's Completed state minus the move, and call -> motor start, n times, beside the
  in-process figures above (`single`: wall minus move; `single.call_to_motor_median_s`).

The agents poll at their deployed default (events wake them; the poll is the fallback).

Env: `BENCH_BATCH_SINGLE_N` (default 20), `BENCH_BATCH_OPS` (default 100),
`BENCH_CONTROLLER_N` (default 10).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

HOTELS = "BCDA"


def run(results_dir: Path) -> dict[str, Any]:
    """Run the batch benchmark; return its numbers."""
    from tests.support.fleet_harness import start_fleet
    from tests.support.prefect_server import prefect_pointed_at, start_prefect_server

    single_n = int(os.environ.get("BENCH_BATCH_SINGLE_N", "20"))
    ops_n = int(os.environ.get("BENCH_BATCH_OPS", "100"))
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    server = start_prefect_server(work / "home")
    pointed = contextlib.ExitStack()  # this process's Prefect settings -> the new server
    pointed.enter_context(prefect_pointed_at(server))
    fleet = None
    result: dict[str, Any] = {}
    try:
        from fleet.client import FleetClient

        fleet = start_fleet(
            work / "fleet", "bench", 5, instant=False, speed=180.0, poll_interval=None
        )
        client = FleetClient(fleet.inventory_path)
        client.activate_hotel("bench-a", "A")  # warm-up: imports, first flow registration

        walls, moves, calls, to_motor = [], [], [], []
        for i in range(single_n):
            t0, called = time.perf_counter(), time.time()
            out = client.activate_hotel("bench-a", HOTELS[i % 4])
            walls.append(time.perf_counter() - t0)
            moves.append(float(out["duration"]))
            calls.append((called, time.time(), out))
            to_motor.append(float(out["started_at"]) - called)
        overheads = sorted(w - m for w, m in zip(walls, moves, strict=True))
        result["single"] = {
            "n": single_n,
            "wall_median_s": round(statistics.median(walls), 3),
            "move_median_s": round(statistics.median(moves), 3),
            "overhead_median_s": round(
                statistics.median(w - m for w, m in zip(walls, moves, strict=True)), 3
            ),
            "ratio_wall_over_move": round(statistics.median(walls) / statistics.median(moves), 2),
            "overhead_p95_s": round(overheads[max(0, round(0.95 * len(overheads)) - 1)], 3),
            "call_to_motor_median_s": round(statistics.median(to_motor), 3),
            "phases_ms": _phases(calls),
        }

        # beside the in-process figures, on the same server state (before the batch's backlog)
        result["controller"] = controller_activations(
            fleet, int(os.environ.get("BENCH_CONTROLLER_N", "10"))
        )
        resorts = fleet.names
        since = time.time()
        report, wall, busiest = round_robin_batch(client, resorts, ops_n)
        result["batch"] = {
            **_batch_figures(report, wall, busiest, ops_n),
            **_motor_figures(fleet, report, since),
            "resorts": len(resorts),
            "per_operation_median_s": round(
                statistics.median(r.duration for r in report.results if r.duration), 3
            ),
        }
    finally:
        if fleet is not None:
            fleet.stop()
        server.stop()
        pointed.close()
    result["batch_postgres"] = postgres_batch(work / "postgres", ops_n)
    return result


def _batch_figures(report: Any, wall: float, busiest: float, ops_n: int) -> dict[str, Any]:
    return {
        "operations": ops_n,
        "resorts": len({r.resort for r in report.results}),
        "completed": sum(r.state == "Completed" for r in report.results),
        "makespan_s": round(report.makespan, 2),
        "wall_s": round(wall, 2),
        "busiest_resort_move_total_s": round(busiest, 2),
        "ratio_makespan_over_busiest_moves": round(report.makespan / busiest, 2),
        "failures": [f"{r.operation}: {r.state}: {r.error}" for r in report.failed][:5],
    }


def _motor_figures(fleet: Any, report: Any, since: float) -> dict[str, Any]:
    """What the motors saw in the batch: goals written while moving (an overlap of two moves;
    from the emulators' write logs), and the idle time between two moves of a resort (from one
    move's end to the next's start at the agent; median, p95, max)."""
    overlapping = sum(
        1
        for name in fleet.names
        for w in fleet.emulators[name].writes()
        if w["t"] >= since and w["name"] == "goal_position" and w["torque"] and w["moving"]
    )
    spans: dict[str, list[tuple[float, float]]] = {}
    for r in report.results:
        if r.state == "Completed" and isinstance(r.result, dict):
            span = (float(r.result["started_at"]), float(r.result["finished_at"]))
            spans.setdefault(r.resort, []).append(span)
    gaps = sorted(
        later[0] - earlier[1]
        for resort_spans in spans.values()
        for earlier, later in zip(sorted(resort_spans), sorted(resort_spans)[1:], strict=False)
    )
    figures: dict[str, Any] = {"goals_written_while_moving": overlapping}
    if gaps:
        figures.update(
            gap_between_moves_median_s=round(statistics.median(gaps), 3),
            gap_between_moves_p95_s=round(gaps[max(0, round(0.95 * len(gaps)) - 1)], 3),
            gap_between_moves_max_s=round(gaps[-1], 3),
        )
    return figures


def postgres_batch(work: Path, ops_n: int) -> dict[str, Any]:
    """The round-robin batch on a Prefect server backed by a PostgreSQL started for it."""
    import signal

    from fleet.core.errors import ServerError
    from fleet.core.server.postgres import start_postgres
    from tests.support.fleet_harness import start_fleet
    from tests.support.prefect_server import prefect_pointed_at, start_prefect_server

    work.mkdir(parents=True, exist_ok=True)
    for path in (work.parent, work):
        path.chmod(0o755)  # PostgreSQL's `postgres` user must reach its data directory
    try:
        postgres = start_postgres(work / "pg")
    except ServerError as exc:
        return {"skipped": f"PostgreSQL did not start here: {exc}"}
    fleet = server = None
    try:
        server = start_prefect_server(work / "home", database_url=postgres.url)
        with prefect_pointed_at(server):
            from fleet.client import FleetClient

            fleet = start_fleet(
                work / "fleet", "bench", 5, instant=False, speed=180.0, poll_interval=None
            )
            client = FleetClient(fleet.inventory_path)
            client.activate_hotel("bench-a", "A")  # warm-up
            since = time.time()
            report, wall, busiest = round_robin_batch(client, fleet.names, ops_n)
            return {
                **_batch_figures(report, wall, busiest, ops_n),
                **_motor_figures(fleet, report, since),
            }
    finally:
        if fleet is not None:
            fleet.stop()
        if server is not None:
            server.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(postgres.pid, signal.SIGINT)


def controller_activations(fleet: Any, n: int) -> dict[str, Any]:
    """Activations started with `run_deployment(timeout=0)` of the parent deployment, served by
    `fleet controller` (Prefect's default poll): from the call to the parent run's Completed state
    (its server timestamp: no client polling in the figure) and to the motor's start, and the
    move; overhead = call -> Completed minus the move."""
    from prefect import get_client
    from prefect.deployments import run_deployment

    from flows.results import read_device_result
    from resort_common import names
    from tests.support.controller import running_controller

    deployment = names.parent_deployment_name("fleet-activate-hotel", fleet.inventory)
    totals, moves, to_motor = [], [], []
    log = fleet.inventory_path.parent / "controller.log"
    with running_controller(fleet.inventory_path, log, poll_seconds=None):
        time.sleep(3.0)  # subscribed
        for i in range(n):
            called = time.time()
            run = run_deployment(
                deployment,
                parameters={"resort": "bench-b", "hotel": HOTELS[i % 4]},
                timeout=0,
                as_subflow=False,
            )
            with get_client(sync_client=True) as client:
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    run = client.read_flow_run(run.id)
                    if run.state is not None and run.state.is_final():
                        break
                    time.sleep(0.5)  # the figures are the server's timestamps: no need to hurry
                if run.state is None or not run.state.is_completed():
                    state = run.state.name if run.state else None
                    return {"failed": f"run {run.name} ended {state}"}
                completed = max(
                    s.timestamp.timestamp()
                    for s in client.read_flow_run_states(run.id)
                    if s.type.value == "COMPLETED"
                )
            device = read_device_result(_device_run_after(called, "bench-b"))
            totals.append(completed - called)
            moves.append(float(device["duration"]))
            to_motor.append(float(device["started_at"]) - called)
    overheads = [t - m for t, m in zip(totals, moves, strict=True)]
    return {
        "n": n,
        "call_to_completed_median_s": round(statistics.median(totals), 3),
        "call_to_motor_median_s": round(statistics.median(to_motor), 3),
        "move_median_s": round(statistics.median(moves), 3),
        "overhead_median_s": round(statistics.median(overheads), 3),
    }


def _device_run_after(since: float, resort: str) -> str:
    """The id of the newest device run on `resort`'s queue created after `since` (epoch s)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, WorkQueueFilter, WorkQueueFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    from resort_common import names

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(),
            work_queue_filter=WorkQueueFilter(
                name=WorkQueueFilterName(any_=[names.work_queue_name(resort)])
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
    if not runs or runs[0].created is None or runs[0].created.timestamp() < since:
        raise RuntimeError(f"no device run on {resort} after the call")
    return str(runs[0].id)


def round_robin_batch(client: Any, resorts: list[str], ops_n: int) -> tuple[Any, float, float]:
    """Every resort to hotel A, then `ops_n` activations round-robin over `resorts` (consecutive
    hotels of a resort differ) with `max_concurrency` = resorts.

    Returns:
        The batch report, its wall time and the busiest resort's summed physical move time.
    """
    for name in resorts:  # every resort starts at A, so the first B is a real move
        client.activate_hotel(name, "A")
    operations = [
        {
            "resort": resorts[i % len(resorts)],
            "action": "activate_hotel",
            "hotel": HOTELS[(i // len(resorts)) % 4],
        }
        for i in range(ops_n)
    ]
    t0 = time.perf_counter()
    report = client.batch(operations, max_concurrency=len(resorts))
    wall = time.perf_counter() - t0
    per_resort: dict[str, float] = {}
    for r in report.results:
        if r.state == "Completed" and isinstance(r.result, dict):
            per_resort[r.resort] = per_resort.get(r.resort, 0.0) + float(r.result["duration"])
    return report, wall, max(per_resort.values()) if per_resort else float("nan")


def _phases(calls: list[tuple[float, float, dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """The phase table of the single activations (`bench.phases`), from their runs' states."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    from bench.phases import activation_phases, phase_table

    rows = []
    with get_client(sync_client=True) as client:
        parents = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["fleet-activate-hotel"])), limit=200
        )
        for called, returned, out in calls:
            parent = next(
                p for p in parents if p.created and called <= p.created.timestamp() <= returned
            )
            child = client.read_flow_run(out["flow_run_id"])
            parent_states = client.read_flow_run_states(parent.id)
            child_states = client.read_flow_run_states(child.id)
            rows.append(
                activation_phases(called, returned, out, parent, parent_states, child, child_states)
            )
    return phase_table(rows)


if __name__ == "__main__":  # pragma: no cover - manual run
    import json

    print(json.dumps(run(Path("bench/results")), indent=2))
