"""Run the benchmarks: ``python -m bench`` (all) or ``python -m bench device`` (one).

Discovers every ``bench/bench_*.py`` module (``ha`` only when named: ``make bench-ha``), calls
its ``run(results_dir) -> dict``, writes the dict to ``bench/results/<name>.json`` and prints one
table of every number. A run that includes the
device, dispatch and batch benchmarks (``make bench``) also writes ``bench/results/summary.json``
(`bench.summary`) and prints its figures with their baselines; ``--summary`` rebuilds it from the
results files already there.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import summary

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


#: run only when named (`make bench-ha`): they start a topology of their own, minutes long
OPT_IN = frozenset({"ha"})


def available() -> list[str]:
    """Names of the benchmarks (``bench_device.py`` -> ``device``), sorted."""
    return sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))


def _flatten(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        rows: list[tuple[str, Any]] = []
        for key, sub in value.items():
            rows.extend(_flatten(f"{prefix}.{key}" if prefix else str(key), sub))
        return rows
    return [(prefix, value)]


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_table(results: dict[str, dict[str, Any]]) -> None:
    """One table: benchmark, metric, value."""
    rows = [
        (name, metric, _format(value))
        for name, data in results.items()
        for metric, value in _flatten("", data)
    ]
    widths = [max(len(r[i]) for r in [("bench", "metric", "value"), *rows]) for i in range(3)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format("bench", "metric", "value"))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the named benchmarks (default: all); return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run ({', '.join(available())})")
    parser.add_argument(
        "--summary",
        action="store_true",
        help="run nothing; rebuild summary.json from the results files already written",
    )
    args = parser.parse_args(argv)
    if args.summary:
        return _write_summary(*summary.load_results(RESULTS_DIR))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    names = args.names or [name for name in available() if name not in OPT_IN]
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(
            f"bench: unknown benchmark {', '.join(unknown)} (have: {', '.join(available())})",
            file=sys.stderr,
        )
        return 2
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        module = importlib.import_module(f"bench.bench_{name}")
        started = time.monotonic()
        data = dict(module.run(RESULTS_DIR))
        data.setdefault("wall_s", round(time.monotonic() - started, 2))
        (RESULTS_DIR / f"{name}.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        results[name] = data
    print_table(results)
    if set(summary.SOURCES) <= set(names):  # the headline figures come from one run only
        print()
        return _write_summary(results, None)
    return 0


def _write_summary(results: dict[str, dict[str, Any]], measured_at: Any) -> int:
    """Write `summary.json` from `results` and print its table (figure, value, baseline)."""
    doc = summary.build_summary(results, measured_at)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    summary.print_summary(doc, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
