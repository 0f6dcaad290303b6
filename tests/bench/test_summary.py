"""bench.summary: the headline figures come from the detailed results, nulls are listed."""

from __future__ import annotations

from datetime import UTC, datetime

from bench.summary import SUMMARY_KEYS, build_summary

DISPATCH = {
    "plate_resort_worker": {"median_s": 0.9, "p95_s": 2.5},
    "process_worker_default": {"median_s": 17.5},
    "estop_to_torque_off": {"median_s": 0.27},
    "agent_rss_idle_mb": 97.5,
    "agent_rss_after_100_runs_mb": 106.8,
    "plate_resort_worker_with_20_agents": {"p95_s": 1.7},
}
BATCH = {
    "single": {"ratio_wall_over_move": 5.25, "overhead_median_s": 0.6, "overhead_p95_s": 0.7},
    "batch": {"ratio_makespan_over_busiest_moves": 18.3},
    "batch_postgres": {"ratio_makespan_over_busiest_moves": 2.9},
    "controller": {"overhead_median_s": 12.5},
}
LOCK = {"other_process": {"median_s": 0.19}, "same_process_baseline": {"median_s": 0.11}}


def test_full_run_has_exactly_the_keys() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    doc = build_summary({"dispatch": DISPATCH, "batch": BATCH, "device": {}, "lock": LOCK}, when)
    assert tuple(doc) == SUMMARY_KEYS
    assert doc["dispatch_p50_s"] == 0.9 and doc["stock_dispatch_p50_s"] == 17.5
    assert doc["activation_ratio"] == 5.25 and doc["batch_makespan_ratio"] == 18.3
    assert (doc["activation_overhead_p50_s"], doc["activation_overhead_p95_s"]) == (0.6, 0.7)
    assert doc["scale_resorts"] == 21 and doc["scale_dispatch_p95_s"] == 1.7
    assert doc["batch_makespan_ratio_postgres"] == 2.9
    assert doc["controller_activation_overhead_p50_s"] == 12.5
    assert doc["lock_handoff_p50_s"] == 0.19
    assert doc["measured_at"] == "2026-01-02T03:04:05+00:00"


def test_missing_benchmark_gives_nulls_and_a_list() -> None:
    doc = build_summary({"dispatch": DISPATCH})
    assert doc["activation_ratio"] is None and doc["batch_makespan_ratio"] is None
    assert doc["missing"] == [
        "activation_ratio",
        "activation_overhead_p50_s",
        "activation_overhead_p95_s",
        "controller_activation_overhead_p50_s",
        "batch_makespan_ratio",
        "batch_makespan_ratio_postgres",
        "lock_handoff_p50_s",
    ]
    assert doc["dispatch_p95_s"] == 2.5
