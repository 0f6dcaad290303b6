"""The headline figures of one benchmark run: `bench/results/summary.json` and its table.

Built from the detailed results of the other benchmarks (`device`, `dispatch`, `batch`), never
measured here; a figure whose source benchmark did not run (or lacks the number) is `null` and its
key is listed under `missing` (the table says why). Not a `bench_*.py` module on purpose: the runner
discovers those as benchmarks.

Keys (seconds, MB, ratios): `dispatch_p50_s`, `dispatch_p95_s`, `stock_dispatch_p50_s`,
`activation_ratio`, `activation_overhead_p50_s`, `activation_overhead_p95_s`,
`controller_activation_overhead_p50_s`, `batch_makespan_ratio`,
`batch_makespan_ratio_postgres`, `lock_handoff_p50_s`, `estop_p50_s`, `agent_rss_idle_mb`,
`agent_rss_after_100_runs_mb`, `scale_resorts`, `scale_dispatch_p95_s`, `measured_at`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["SOURCES", "SUMMARY_KEYS", "build_summary", "load_results", "print_summary"]

#: the benchmarks the summary reads
SOURCES = ("device", "dispatch", "batch", "lock")

SUMMARY_KEYS = (
    "dispatch_p50_s",
    "dispatch_p95_s",
    "stock_dispatch_p50_s",
    "activation_ratio",
    "activation_overhead_p50_s",
    "activation_overhead_p95_s",
    "controller_activation_overhead_p50_s",
    "batch_makespan_ratio",
    "batch_makespan_ratio_postgres",
    "lock_handoff_p50_s",
    "estop_p50_s",
    "agent_rss_idle_mb",
    "agent_rss_after_100_runs_mb",
    "scale_resorts",
    "scale_dispatch_p95_s",
    "measured_at",
)

_SCALE_KEY = re.compile(r"^plate_resort_worker_with_(\d+)_agents$")


def _get(data: Mapping[str, Any] | None, *path: str) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _scale(dispatch: Mapping[str, Any] | None) -> tuple[int | None, float | None]:
    """(resorts with an agent connected, dispatch p95) of the dispatch benchmark's scale run.

    The scale run measures resort-a's dispatch with N idle agents connected besides it, so the
    fleet has N + 1 resorts.
    """
    for key, value in (dispatch or {}).items():
        match = _SCALE_KEY.match(key)
        if match:
            return int(match.group(1)) + 1, _get(value, "p95_s")
    return None, None


# summary key -> (source benchmark, how to read it from that benchmark's results)
_FIGURES: dict[str, tuple[str, Callable[[Mapping[str, Any] | None], Any]]] = {
    "dispatch_p50_s": ("dispatch", lambda d: _get(d, "plate_resort_worker", "median_s")),
    "dispatch_p95_s": ("dispatch", lambda d: _get(d, "plate_resort_worker", "p95_s")),
    "stock_dispatch_p50_s": ("dispatch", lambda d: _get(d, "process_worker_default", "median_s")),
    "activation_ratio": ("batch", lambda d: _get(d, "single", "ratio_wall_over_move")),
    "activation_overhead_p50_s": ("batch", lambda d: _get(d, "single", "overhead_median_s")),
    "activation_overhead_p95_s": ("batch", lambda d: _get(d, "single", "overhead_p95_s")),
    "controller_activation_overhead_p50_s": (
        "batch",
        lambda d: _get(d, "controller", "overhead_median_s"),
    ),
    "batch_makespan_ratio": (
        "batch",
        lambda d: _get(d, "batch", "ratio_makespan_over_busiest_moves"),
    ),
    "batch_makespan_ratio_postgres": (
        "batch",
        lambda d: _get(d, "batch_postgres", "ratio_makespan_over_busiest_moves"),
    ),
    "lock_handoff_p50_s": ("lock", lambda d: _get(d, "other_process", "median_s")),
    "estop_p50_s": ("dispatch", lambda d: _get(d, "estop_to_torque_off", "median_s")),
    "agent_rss_idle_mb": ("dispatch", lambda d: _get(d, "agent_rss_idle_mb")),
    "agent_rss_after_100_runs_mb": ("dispatch", lambda d: _get(d, "agent_rss_after_100_runs_mb")),
    "scale_resorts": ("dispatch", lambda d: _scale(d)[0]),
    "scale_dispatch_p95_s": ("dispatch", lambda d: _scale(d)[1]),
}


def build_summary(
    results: Mapping[str, Mapping[str, Any]], measured_at: datetime | None = None
) -> dict[str, Any]:
    """The summary document from one run's results (benchmark name -> its result dict).

    Returns:
        Every key of `SUMMARY_KEYS`; plus `missing` (the null keys, in order) when any figure
        could not be taken from the results.
    """
    summary: dict[str, Any] = {}
    missing: list[str] = []
    for key, (source, read) in _FIGURES.items():
        data = results.get(source)
        summary[key] = read(data) if data is not None else None
        if summary[key] is None:
            missing.append(key)
    when = measured_at or datetime.now(UTC)
    summary["measured_at"] = when.astimezone(UTC).isoformat(timespec="seconds")
    if missing:
        summary["missing"] = missing
    return summary


def load_results(results_dir: Path) -> tuple[dict[str, dict[str, Any]], datetime | None]:
    """The source benchmarks' JSON files in `results_dir`, and the oldest file's time."""
    results: dict[str, dict[str, Any]] = {}
    oldest: datetime | None = None
    for name in SOURCES:
        path = results_dir / f"{name}.json"
        if not path.exists():
            continue
        results[name] = json.loads(path.read_text(encoding="utf-8"))
        stamp = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        oldest = stamp if oldest is None or stamp < oldest else oldest
    return results, oldest


def _baselines(summary: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, str]:
    """What each figure is judged against, as shown in the table."""

    def num(value: Any, unit: str) -> str:
        return "n/a" if value is None else f"{value:.4g} {unit}".rstrip()

    sdk_ms = _get(results.get("device"), "sdk_round_trip", "median_ms")
    stock = summary.get("stock_dispatch_p50_s")
    return {
        "dispatch_p50_s": f"stock process worker p50 {num(stock, 's')}",
        "dispatch_p95_s": f"stock process worker p50 {num(stock, 's')}",
        "stock_dispatch_p50_s": "(the baseline: Prefect process worker, default settings)",
        "activation_ratio": "1.0 = the physical move time (floor)",
        "activation_overhead_p50_s": "0 = the physical move time (wall minus move)",
        "activation_overhead_p95_s": "0 = the physical move time (wall minus move)",
        "controller_activation_overhead_p50_s": "in-process p50 "
        + num(summary.get("activation_overhead_p50_s"), "s"),
        "batch_makespan_ratio": "1.0 = busiest resort's summed move time (floor)",
        "batch_makespan_ratio_postgres": "1.0 = busiest resort's summed move time (floor)",
        "lock_handoff_p50_s": "waiter in the holder's process p50 "
        + num(_get(results.get("lock"), "same_process_baseline", "median_s"), "s"),
        "estop_p50_s": "one SDK round trip "
        + (num(sdk_ms / 1000.0, "s") if sdk_ms is not None else "n/a"),
        "agent_rss_idle_mb": "-",
        "agent_rss_after_100_runs_mb": f"idle {num(summary.get('agent_rss_idle_mb'), 'MB')}",
        "scale_resorts": (
            "n/a"
            if summary.get("scale_resorts") is None
            else f"{summary['scale_resorts'] - 1} idle agents + the measured one"
        ),
        "scale_dispatch_p95_s": f"1 agent: p95 {num(summary.get('dispatch_p95_s'), 's')}",
        "measured_at": "-",
    }


def print_summary(summary: Mapping[str, Any], results: Mapping[str, Any]) -> None:
    """Print one table: figure, value, baseline (and the missing figures, if any)."""
    baselines = _baselines(summary, results)
    rows = []
    for key in SUMMARY_KEYS:
        value = summary.get(key)
        shown = "null" if value is None else f"{value:.4g}" if isinstance(value, float) else value
        rows.append((key, str(shown), baselines.get(key, "")))
    widths = [max(len(r[i]) for r in [("figure", "value", "baseline"), *rows]) for i in range(2)]
    print(f"{'figure':<{widths[0]}}  {'value':<{widths[1]}}  baseline")
    print(f"{'-' * widths[0]}  {'-' * widths[1]}  {'-' * 8}")
    for key, shown, baseline in rows:
        print(f"{key:<{widths[0]}}  {shown:<{widths[1]}}  {baseline}")
    for key in summary.get("missing") or ():
        source = _FIGURES[key][0]
        why = "did not run" if results.get(source) is None else "has no such figure"
        print(f"missing: {key} (benchmark {source!r} {why})")
