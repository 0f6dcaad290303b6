"""Where one activation's time goes: its phases, read from the parent's and the device run's
state timestamps, the driver's move times and the client's clock.

Each activation gives one row (seconds); `phase_table` gives each phase's median and p95 (ms).
The client and the server run on one host here, so their clocks agree. Not a `bench_*.py`
module: the runner discovers those as benchmarks.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["PHASES", "activation_phases", "phase_table"]

#: the phases in the order they happen (the keys of `activation_phases`)
PHASES = (
    "client call -> parent run created",
    "parent created -> Running",
    "parent Running -> device run created (select, lock, create)",
    "device run created -> Pending (wake-up, claim)",
    "device Pending -> Running",
    "device Running -> motor starts",
    "move (driver)",
    "motor stops -> device Completed",
    "device Completed -> parent Completed (wait, result, release)",
    "parent Completed -> client returns",
)


def _first(states: Sequence[Any]) -> dict[str, float]:
    """State type -> its first timestamp (epoch seconds)."""
    first: dict[str, float] = {}
    for s in sorted(states, key=lambda s: s.timestamp):
        first.setdefault(s.type.value, s.timestamp.timestamp())
    return first


def activation_phases(
    called: float,
    returned: float,
    result: Mapping[str, Any],
    parent: Any,
    parent_states: Sequence[Any],
    child: Any,
    child_states: Sequence[Any],
) -> dict[str, float]:
    """One activation's phases (seconds), from the client's call/return times (epoch), the
    device result (`started_at`, `finished_at`, `duration`) and both runs with their states."""
    p, c = _first(parent_states), _first(child_states)
    parent_created, child_created = parent.created.timestamp(), child.created.timestamp()
    moments = [
        called,
        parent_created,
        p["RUNNING"],
        child_created,
        c["PENDING"],
        c["RUNNING"],
        float(result["started_at"]),
        float(result["finished_at"]),
        c["COMPLETED"],
        p["COMPLETED"],
        returned,
    ]
    return {name: moments[i + 1] - moments[i] for i, name in enumerate(PHASES)}


def phase_table(rows: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Phase -> {median_ms, p95_ms} over `rows` (nearest-rank p95)."""
    table: dict[str, dict[str, float]] = {}
    for name in PHASES:
        values = sorted(row[name] for row in rows)
        p95 = values[min(len(values) - 1, max(0, round(0.95 * len(values)) - 1))]
        table[name] = {
            "median_ms": round(statistics.median(values) * 1000, 1),
            "p95_ms": round(p95 * 1000, 1),
        }
    return table
