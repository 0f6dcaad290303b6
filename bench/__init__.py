"""Benchmarks: `python -m bench [NAME ...]` runs `bench/bench_*.py`, writes `bench/results/*.json`.

Each benchmark module has ``run(results_dir: Path) -> dict`` returning flat-ish JSON-ready numbers;
the runner writes them to ``bench/results/<name>.json`` and prints one table for all of them.
Benchmarks report speed; tests never assert on wall-clock time.
"""

from __future__ import annotations

__all__: list[str] = []
