"""The demo's plate step (`fleet.demo.plates`) on a real server with real agents: stores confirmed
by the simulated arm (`fleet plates confirm` in a process of its own), a retrieve, the occupancy.

Fleet `dpl`: two timed pty emulators at 270 deg/s, the registry of its own (`tests.support.plates`:
SQLite, or PostgreSQL under `make test-postgres`). `make demo` runs the same step on
`inventory/demo.yaml` (tests/e2e/test_demo.py).
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest

from fleet.demo.plates import demo_plate_ids


def test_demo_plate_ids_skip_the_plates_in_the_fleet() -> None:
    assert demo_plate_ids(set(), 2) == ["DEMO-0001", "DEMO-0002"]
    assert demo_plate_ids({"DEMO-0001", "DEMO-0003", "P1"}, 3) == [
        "DEMO-0002",
        "DEMO-0004",
        "DEMO-0005",
    ]


@pytest.mark.orchestration
def test_the_arm_confirms_each_hand_off_and_the_occupancy_is_printed(
    prefect_server: Any, tmp_path: Path
) -> None:
    from fleet.client import AsyncFleetClient
    from fleet.demo.plates import scenario_plates
    from fleet.demo.scenario import Console
    from tests.support.plates import start_plate_fleet

    lab = start_plate_fleet(tmp_path, "dpl", 2, instant=False, speed=270.0)
    try:
        out = io.StringIO()
        client = AsyncFleetClient(lab.inventory, lock_timeout=60.0)
        rows = asyncio.run(
            scenario_plates(client, lab.inventory, Console(out), "http://127.0.0.1:1")
        )
        text = out.getvalue()
        assert [(r.operation, r.resort, r.state) for r in rows] == [
            ("store DEMO-0001 in dpl-a hotel D", "dpl-a", "Completed"),
            ("store DEMO-0002 in dpl-b hotel D", "dpl-b", "Completed"),
            ("retrieve DEMO-0002", "dpl-b", "Completed"),
        ], text
        for plate, where in (
            ("DEMO-0001", "dpl-a hotel D room 1"),
            ("DEMO-0002", "dpl-b hotel D room 1"),
        ):
            assert f"arm: {plate} presented at {where} (run paused)" in text
            assert f"arm$ fleet plates confirm {plate}  -> {plate}: confirm sent" in text
        assert lab.emulators["dpl-b"].stats()["position_deg"] == pytest.approx(270.0, abs=1.0)
        # the occupancy as `fleet plates list` prints it: DEMO-0002 was retrieved
        listed = [line.strip() for line in text.splitlines() if line.startswith("    ")]
        assert listed == ["DEMO-0001: dpl-a hotel D room 1 (occupied)"], text
        assert "http://127.0.0.1:1/artifacts/key/plates-dpl-a" in text
        assert "Traceback" not in text
    finally:
        lab.stop()
