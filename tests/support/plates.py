"""Plate-registry test helpers: a test fleet with a registry of its own, its occupancy artifact."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.support.fleet_harness import Fleet, start_fleet
from tests.support.registry_db import (
    DATABASE_ENV,
    create_database,
    drop_database,
    inventory_registry,
)

__all__ = ["PASSWORD_ENV", "occupancy", "start_plate_fleet"]

#: the variable the test inventories' `registry.password_env` names (PostgreSQL)
PASSWORD_ENV = "FLEET_TEST_REGISTRY_PASSWORD"


def start_plate_fleet(
    tmp: Path, prefix: str, count: int, *, registry: dict[str, Any] | None = None, **options: Any
) -> Fleet:
    """`start_fleet` with the plate registry in an SQLite file under `tmp`, or in a new database
    on the PostgreSQL server of `$FLEET_TEST_DATABASE_URL` when it is set (dropped by the fleet's
    `stop`), plus `registry` settings; migrated with `fleet plates migrate`."""
    from fleet.cli import main as fleet_main

    database = create_database() if DATABASE_ENV in os.environ else None
    if database is not None:
        settings, password = inventory_registry(database, PASSWORD_ENV)
        os.environ[PASSWORD_ENV] = password or ""  # what the inventory's password_env names
    else:
        settings = {"url": f"sqlite+aiosqlite:///{tmp / 'plates.db'}"}
    fleet_options = {
        **options.pop("fleet_options", {}),
        "registry": {**settings, **(registry or {})},
    }
    try:
        lab = start_fleet(tmp, prefix, count, fleet_options=fleet_options, **options)
    except BaseException:
        if database is not None:
            drop_database(database)
        raise
    if database is not None:
        lab.on_stop.append(lambda: drop_database(database))
    try:
        assert fleet_main(["plates", "migrate", "--inventory", str(lab.inventory_path)]) == 0
    except BaseException:
        lab.stop()
        raise
    return lab


def occupancy(resort: str) -> list[dict[str, Any]]:
    """The table of `resort`'s latest occupancy artifact (rows of room, hotel columns)."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from resort_common import names

    key = ArtifactFilterKey(any_=[names.occupancy_artifact_key(resort)])
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=key))
    data = max(found, key=lambda a: a.created).data
    table = json.loads(data) if isinstance(data, str) else data
    assert isinstance(table, list)
    return table
