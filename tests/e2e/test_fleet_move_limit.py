"""The fleet-wide move limit (`fleet.max_concurrent_moves`) on three emulated resorts."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from fleet.client import FleetClient
from tests.support.fleet_harness import start_fleet

pytestmark = pytest.mark.orchestration


def test_a_limit_of_one_move_serialises_moves_across_resorts(prefect_server, tmp_path: Path):
    # timed moves (90 deg at 180 deg/s = 0.5 s), three resorts, three parents at a time
    fleet = start_fleet(tmp_path, "ml", 3, instant=False, speed=180.0, max_concurrent_moves=1)
    try:
        operations = [
            {"resort": resort, "action": "activate_hotel", "hotel": hotel}
            for hotel in ("B", "C")
            for resort in ("ml-a", "ml-b", "ml-c")
        ]
        report = FleetClient(fleet.inventory_path).batch(operations, max_concurrency=3)
        assert [r.state for r in report.results] == ["Completed"] * 6, report.failed
        bodies = sorted(
            (float(r.result["started_at"]), float(r.result["finished_at"]), r.resort)
            for r in report.results
        )
        assert all(r.result["duration"] > 0.3 for r in report.results)  # they really moved
        # each motion run's body (which contains its move) ends before the next one starts
        for (_, end, resort), (start, _, next_resort) in itertools.pairwise(bodies):
            assert end <= start, f"{resort} still moving when {next_resort} started"
        assert len({resort for *_, resort in bodies}) == 3
    finally:
        fleet.stop()
