"""Fault suite, instant fleet: a server restart during a batch, and 200 parent runs racing over
four resorts; every operation ends final, no resort ever has two moves at once.

`cr` (class `TestInstantFleet`): four resorts with instant emulators, real agent processes with
pty emulators, against this module's own Prefect server (restarted by a test:
`tests.support.chaos`).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.chaos import (
    FINAL,
    LEASE,
    REPOSSESSOR,
    in_background,
    lock_slots,
    measured,
    queue_runs,
    restart_server,
)
from tests.support.fleet_harness import Fleet, start_fleet
from tests.support.prefect_server import PrefectServer
from tests.support.waiting import wait_for

# timeouts cover the class fixture (fleet start-up) and the stated bounds
pytestmark = [pytest.mark.chaos, pytest.mark.orchestration, pytest.mark.timeout(600)]


# --- instant fleet: server restart during a batch, 200 racing parents -----------------------


@pytest.fixture(scope="class")
def instant(
    chaos_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    fleet = start_fleet(Path(tmp_path_factory.mktemp("chaos-instant")), "cr", 4, instant=True)
    yield fleet
    fleet.stop()


class TestInstantFleet:
    def test_server_restart_during_batch_every_operation_final(
        self, instant: Fleet, chaos_server: PrefectServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from fleet.client import FleetClient
        from fleet.core import locks

        # A slot granted while the server goes down can lose its answer: the client retries, the
        # slot stays with the lost lease until it expires. Prefect's minimum lease (60 s, default
        # 120 s) keeps that bound short here.
        short_lease = functools.partial(locks.resort_lock, lease_duration=LEASE)
        monkeypatch.setattr(locks, "resort_lock", short_lease)

        resorts = instant.names
        hotels = "BCDA"
        operations = [
            {"resort": r, "action": "activate_hotel", "hotel": hotels[(step + i) % 4]}
            for step in range(8)
            for i, r in enumerate(resorts)
        ]
        done: list[int] = []
        since = time.time()
        client = FleetClient(instant.inventory_path, lock_timeout=240)
        thread, outcome = in_background(
            lambda: client.batch(
                operations,
                max_concurrency=4,
                on_progress=lambda r: done.append(r.index) if r.state in FINAL else None,
            )
        )
        wait_for(lambda: len(done) >= 6, 120, 0.05, "batch under way")
        downtime = restart_server(chaos_server)
        restarted = time.monotonic()
        returned = LEASE + REPOSSESSOR + 120  # a lost grant's lease, plus the operations
        thread.join(returned)
        assert not thread.is_alive(), f"batch not returned {returned} s after the restart"
        assert "error" not in outcome, outcome.get("error")
        report = outcome["result"]
        assert len(report.results) == len(operations)
        for r in report.results:
            if r.state != "Completed" or (r.duration or 0) > 10:
                print(f"chaos-detail: op {r.index} {r.state} after {r.duration} s: {r.error}")
        # a parent whose wait began or broke while the server was down waits on (flows.waiting)
        assert [r.state for r in report.results] == ["Completed"] * len(operations), report.failed
        measured("server down (restart)", downtime, 120)
        measured("server back -> batch returned", outcome["ended"] - restarted, returned)
        # every device run the batch created ends final; no lock stays held
        bound = LEASE * 2 + REPOSSESSOR + 30

        def settled() -> bool:
            runs = queue_runs(instant, resorts, since)
            return all(r.state is not None and r.state.is_final() for r in runs) and not any(
                lock_slots(resorts).values()
            )

        wait_for(settled, bound, 1.0, "device runs final and locks free")
        settled_after = time.monotonic() - restarted
        measured("server back -> every run final, every lock free", settled_after, bound)
        # and the fleet carries on
        again = client.batch(
            [{"resort": r, "action": "go_home"} for r in resorts], max_concurrency=4
        )
        assert [r.state for r in again.results] == ["Completed"] * len(resorts), again.failed

    def test_200_parents_racing_over_4_resorts_never_overlap(self, instant: Fleet) -> None:
        from fleet.client import AsyncFleetClient

        resorts = instant.names
        client = AsyncFleetClient(instant.inventory_path, lock_timeout=600)
        start = time.time()
        hotels = "BCDA"

        async def one(i: int, gate: asyncio.Semaphore) -> dict[str, Any]:
            async with gate:
                return await client.activate_hotel(resorts[i % 4], hotels[(i // 4) % 4])

        async def race() -> list[dict[str, Any]]:
            gate = asyncio.Semaphore(8)  # two parents per resort in flight: one moves, one waits
            return await asyncio.gather(*(one(i, gate) for i in range(200)))

        began = time.monotonic()
        results = asyncio.run(race())
        measured("200 parents over 4 resorts", time.monotonic() - began, 600)
        assert len(results) == 200
        assert all(r["hotel"] == r["hotel_requested"] for r in results)
        for resort in resorts:
            mine = sorted(
                (r for r in results if r["resort"] == resort), key=lambda r: r["started_at"]
            )
            assert len(mine) == 50
            for before, after in itertools.pairwise(mine):
                assert after["started_at"] >= before["finished_at"], (before, after)
            writes = [
                w
                for w in instant.emulators[resort].writes()
                if w["t"] >= start and w["name"] == "goal_position"
            ]
            assert writes, f"{resort} never moved"
            overlapping = [w for w in writes if w["moving"]]
            assert overlapping == [], f"{resort}: goal written while moving: {overlapping[:3]}"
        assert lock_slots(resorts) == dict.fromkeys(resorts, 0)
