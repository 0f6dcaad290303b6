"""The fleet overview artifact (`fleet.core.overview`): rows, write-only-on-change, the watcher."""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fleet.core.inventory import load_inventory
from fleet.core.overview import COLUMNS, overview_rows, publish_overview, watch_overview
from fleet.core.status import ResortStatus
from resort_common import names
from tests.support.inventories import write_inventory

HEALTH = {
    "temperature": 41.4,
    "voltage": 12.04,
    "current": 0.1,
    "torque": True,
    "moving": False,
    "hardware_errors": [],
    "warnings": [],
}


def _status(name: str = "r1", **changes: Any) -> ResortStatus:
    fields: dict[str, Any] = {
        "name": name,
        "online": True,
        "connected": True,
        "position": 90.04,
        "active_hotel": "B",
        "moving": False,
        "estopped": False,
        "faulted": False,
        "last_error": None,
        "health": HEALTH,
        "queue_paused": False,
        "current_run": None,
    }
    fields.update(changes)
    return ResortStatus(**fields)


def _row(status: ResortStatus, health: Any = None) -> dict[str, Any]:
    (row,) = overview_rows([status], health)
    return row


# --- rows ---------------------------------------------------------------------------------------


def test_an_idle_online_resort() -> None:
    row = _row(_status())
    assert list(row) == list(COLUMNS)
    assert row == {
        "resort": "r1",
        "online": "online",
        "link": "ok",
        "position (deg)": "90.0",
        "hotel": "B",
        "moving": "no",
        "e-stop": "-",
        "queue": "ready",
        "last error": "-",
        "temperature (C)": "41",
        "voltage (V)": "12.0",
    }


def test_an_offline_resort_shows_no_link_and_its_last_known_values() -> None:
    row = _row(_status(online=False, connected=False, position=None, active_hotel=None))
    assert row["online"] == "OFFLINE"
    assert row["link"] == "-"
    assert row["position (deg)"] == "-" and row["hotel"] == "-"


def test_e_stop_lost_link_moving_and_paused_queue() -> None:
    row = _row(_status(estopped=True, connected=False, moving=True, queue_paused=True))
    assert (row["e-stop"], row["link"], row["moving"], row["queue"]) == (
        "ENGAGED",
        "LOST",
        "yes",
        "paused",
    )
    assert _row(_status(queue_paused=None))["queue"] == "-"


def test_last_error_includes_hardware_errors_and_keeps_one_line() -> None:
    health = {**HEALTH, "hardware_errors": ["overload", "overheating"]}
    row = _row(_status(last_error="move timed out\nTraceback ...", health=health))
    assert row["last error"] == "move timed out; hardware error: overload, overheating"
    assert _row(_status(health=None))["temperature (C)"] == "-"


def test_fresh_health_overrides_the_published_one() -> None:
    fresh = {"r1": {**HEALTH, "temperature": 55.6, "voltage": 11.48, "hardware_errors": ["x"]}}
    rows = overview_rows([_status(), _status("r2")], fresh)
    assert (rows[0]["temperature (C)"], rows[0]["voltage (V)"]) == ("56", "11.5")
    assert rows[0]["last error"] == "hardware error: x"
    assert (rows[1]["resort"], rows[1]["temperature (C)"]) == ("r2", "41")


def test_an_inactive_resort_says_so() -> None:
    row = _row(_status(active=False, online=False, connected=False, queue_paused=True))
    assert (row["online"], row["link"], row["queue"]) == ("inactive", "-", "paused")


def test_the_watcher_keeps_events_of_its_fleet_only(tmp_path: Path) -> None:
    from prefect.events import Event

    from fleet.core._overview_watch import _concerns

    inv = _inventory(tmp_path, "ovw-events", ["e1", "e2"])
    ids = {names.resource_id(r) for r in inv.resorts}

    def event(name: str, resource: str, pool: str | None = None) -> Event:
        related = [
            {
                "prefect.resource.id": "prefect.work-pool.1",
                "prefect.resource.role": "work-pool",
                "prefect.resource.name": pool,
            }
        ]
        return Event.model_validate(
            {
                "event": name,
                "resource": {"prefect.resource.id": resource},
                "related": related if pool else [],
            }
        )

    assert _concerns(inv, ids, event("plate-resort.status", names.resource_id("e1")))
    assert not _concerns(inv, ids, event("plate-resort.status", names.resource_id("e10")))
    queue = "prefect.work-queue.1"
    assert _concerns(inv, ids, event("prefect.work-queue.paused", queue, inv.fleet.work_pool))
    assert not _concerns(inv, ids, event("prefect.work-queue.paused", queue, "other-resorts"))
    assert not _concerns(inv, ids, event("prefect.work-queue.ready", queue))


# --- against a real server ----------------------------------------------------------------------


def _inventory(tmp_path: Path, fleet: str, resorts: list[str]) -> Any:
    return load_inventory(write_inventory(tmp_path / "inventory.yaml", fleet, resorts))


def create_device_pool(inv: Any, paused: dict[str, bool]) -> None:
    """The fleet's device pool with a queue for each resort in `paused` (no agent, no worker)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        pool = inv.fleet.work_pool
        client.create_work_pool(WorkPoolCreate(name=pool, type=names.WORKER_TYPE))
        for resort, is_paused in paused.items():
            name = names.work_queue_name(resort)
            client.create_work_queue(name=name, work_pool_name=pool, is_paused=is_paused)


def _versions(key: str) -> list[Any]:
    """Every version of the artifact `key`, newest first."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
        )


def _table(artifact: Any) -> dict[str, dict[str, Any]]:
    return {row["resort"]: row for row in json.loads(artifact.data)}


def _eventually(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.2)


@pytest.mark.orchestration
def test_publishing_writes_a_version_only_when_the_table_changes(
    prefect_server: Any, tmp_path: Path
) -> None:
    inv = _inventory(tmp_path, "ovw-pub", ["p1", "p2", "p3"])
    key = names.overview_artifact_key(inv)
    statuses = [_status("p1"), _status("p2"), _status("p3", online=False, connected=False)]
    assert publish_overview(inv, statuses=statuses) is True
    assert publish_overview(inv, statuses=statuses) is False
    assert len(_versions(key)) == 1

    statuses[1] = _status("p2", estopped=True)
    assert publish_overview(inv, statuses=statuses) is True
    versions = _versions(key)
    assert len(versions) == 2
    latest = versions[0]
    assert latest.type == "table"
    assert _table(latest)["p2"]["e-stop"] == "ENGAGED"
    assert _table(latest)["p1"]["e-stop"] == "-"
    assert latest.description.startswith(
        "Fleet **ovw-pub**: 2 of 3 resorts online, 1 e-stopped, as of "
    )


@pytest.mark.orchestration
def test_publishing_reads_the_status_from_the_server(prefect_server: Any, tmp_path: Path) -> None:
    """No agent has ever published: every resort is offline; q1's queue is paused, q3 has none."""
    inv = _inventory(tmp_path, "ovw-read", ["q1", "q2", "q3"])
    create_device_pool(inv, {"q1": True, "q2": False})
    assert publish_overview(inv) is True
    table = _table(_versions(names.overview_artifact_key(inv))[0])
    assert [row["online"] for row in table.values()] == ["OFFLINE"] * 3
    assert [row["queue"] for row in table.values()] == ["paused", "ready", "-"]
    assert publish_overview(inv) is False


def _publish_status(resort: str, **fields: Any) -> None:
    """Write a resort's status variable as its agent would (a document of `Agent.status()`)."""
    from prefect.variables import Variable

    now = datetime.datetime.now(datetime.UTC).isoformat()
    document = {
        "name": resort,
        "online": True,
        "connected": True,
        "position": 0.0,
        "active_hotel": "A",
        "moving": False,
        "estopped": False,
        "faulted": False,
        "last_error": None,
        "health": HEALTH,
        "current_run": None,
        "updated_at": now,
        **fields,
    }
    Variable.set(names.status_variable_name(resort), document, overwrite=True)


@pytest.mark.orchestration
def test_the_watcher_republishes_after_an_agent_status_event(
    prefect_server: Any, tmp_path: Path
) -> None:
    from prefect import get_client
    from prefect.events import emit_event

    inv = _inventory(tmp_path, "ovw-watch", ["w1", "w2"])
    create_device_pool(inv, {"w1": False, "w2": False})
    key = names.overview_artifact_key(inv)
    stop = threading.Event()
    # no refresh within the test: only the start and the event can publish
    watcher = threading.Thread(
        target=contextvars.copy_context().run,
        args=(watch_overview, inv, stop),
        kwargs={"refresh": 600.0, "min_interval": 0.2},
        daemon=True,
    )
    watcher.start()
    try:
        first = _eventually(lambda: _versions(key), "the first publication")
        assert _table(first[0])["w1"]["online"] == "OFFLINE"

        _publish_status("w1", estopped=True, position=123.45, active_hotel="C")
        emit_event(
            "plate-resort.status",
            resource={
                "prefect.resource.id": names.resource_id("w1"),
                "prefect.resource.name": "w1",
            },
            payload={"online": True, "estopped": True},
        )

        def shows_the_stop() -> dict[str, Any] | None:
            row = _table(_versions(key)[0])["w1"]
            return row if row["e-stop"] == "ENGAGED" else None

        row = _eventually(shows_the_stop, "w1 e-stopped in the overview")
        assert (row["online"], row["position (deg)"], row["hotel"]) == ("online", "123.5", "C")
        assert _table(_versions(key)[0])["w2"]["online"] == "OFFLINE"

        # `fleet drain` pauses the queue: Prefect's own work-queue event republishes
        with get_client(sync_client=True) as client:
            queue = client.read_work_queue_by_name("w2", work_pool_name=inv.fleet.work_pool)
            client.update_work_queue(queue.id, is_paused=True)
        _eventually(
            lambda: _table(_versions(key)[0])["w2"]["queue"] == "paused", "w2's queue paused"
        )
    finally:
        stop.set()
        watcher.join(5.0)
    assert not watcher.is_alive()


@pytest.mark.orchestration
def test_the_watcher_survives_an_unreachable_server_and_stops_promptly(
    prefect_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from fleet.core.server import free_port

    inv = _inventory(tmp_path, "ovw-down", ["d1"])
    stop = threading.Event()
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        context = contextvars.copy_context()
    watcher = threading.Thread(
        target=context.run, args=(watch_overview, inv, stop), kwargs={"refresh": 0.5}, daemon=True
    )
    with caplog.at_level(logging.WARNING):
        watcher.start()
        _eventually(
            lambda: any("not published" in r.getMessage() for r in caplog.records),
            "a warning that the overview was not published",
        )
        _eventually(
            lambda: any("subscription dropped" in r.getMessage() for r in caplog.records),
            "a warning that the event subscription dropped",
        )
        assert watcher.is_alive()
        stopped = time.monotonic()
        stop.set()
        watcher.join(5.0)
    assert not watcher.is_alive()
    assert time.monotonic() - stopped < 3.0


@pytest.mark.orchestration
def test_cli_prints_the_overview_and_publishes_it(
    prefect_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fleet.cli import main

    inv = _inventory(tmp_path, "ovw-cli", ["c1"])
    create_device_pool(inv, {"c1": False})
    assert main(["overview", "--inventory", str(inv.path)]) == 0
    out = capsys.readouterr().out
    assert "RESORT" in out and "TEMPERATURE (C)" in out
    assert "c1" in out and "OFFLINE" in out
    assert "artifact fleet-ovw-cli-overview: new version written" in out
    assert main(["overview", "--inventory", str(inv.path)]) == 0
    assert "fleet-ovw-cli-overview: unchanged" in capsys.readouterr().out
