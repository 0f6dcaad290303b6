"""`fleet-health` keeps the fleet overview artifact current (flows.parent), without agents."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from fleet.core.inventory import load_inventory
from flows import overview, parent
from resort_common import names
from tests.fleet.test_overview import HEALTH, create_device_pool
from tests.support.inventories import write_inventory

pytestmark = pytest.mark.orchestration


def _latest_table(inv: Any) -> tuple[Any, dict[str, dict[str, Any]]]:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    key = names.overview_artifact_key(inv)
    with get_client(sync_client=True) as client:
        (latest,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert isinstance(latest.data, str)
    return latest, {row["resort"]: row for row in json.loads(latest.data)}


def test_a_health_run_publishes_the_overview(prefect_server: Any, tmp_path: Path) -> None:
    """No agent is online, so every resort is skipped; the overview still says so."""
    path = write_inventory(tmp_path / "inventory.yaml", "ovh", ["h1", "h2"])
    inv = load_inventory(path)
    create_device_pool(inv, {"h1": False, "h2": False})
    results = asyncio.run(parent.fleet_health(inventory=str(path)))
    assert {r["state"] for r in results.values()} == {"Skipped"}
    latest, table = _latest_table(inv)
    assert latest.flow_run_id is not None  # shown in the health run's artifacts too
    assert [row["online"] for row in table.values()] == ["OFFLINE", "OFFLINE"]


def test_fresh_readings_are_merged_and_a_failure_only_warns(
    prefect_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    inv = load_inventory(write_inventory(tmp_path / "inventory.yaml", "ovm", ["m1", "m2"]))
    create_device_pool(inv, {"m1": False, "m2": False})
    reading = {**HEALTH, "temperature": 47.2, "voltage": 11.96, "hardware_errors": ["overload"]}
    results: dict[str, dict[str, Any]] = {
        "m1": {"state": "Completed", "result": {"resort": "m1", **reading}, "error": None},
        "m2": {"state": "Skipped", "result": None, "error": "offline"},
    }
    asyncio.run(overview.publish_overview(inv, results))
    _, table = _latest_table(inv)
    assert (table["m1"]["temperature (C)"], table["m1"]["voltage (V)"]) == ("47", "12.0")
    assert table["m1"]["last error"] == "hardware error: overload"
    assert table["m2"]["temperature (C)"] == "-"

    async def broken(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("server gone")

    monkeypatch.setattr("fleet.core.overview.apublish_overview", broken)
    with caplog.at_level(logging.WARNING, logger="flows.overview"):
        asyncio.run(overview.publish_overview(inv, results))
    assert "fleet overview not updated: RuntimeError('server gone')" in caplog.text
