"""A fresh, migrated plate registry for each test (two resorts, hotels A and B): on SQLite, and
on PostgreSQL too when `FLEET_TEST_DATABASE_URL` names a server (`scripts/with-postgres.sh`).

Every test of this directory carries the `registry` marker (`make test-postgres` selects it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from fleet.core.plates import PlateRegistry
from fleet.core.plates.database import upgrade
from tests.support.registry_db import BACKENDS, registry_database

LAYOUT = [("ra", ("A", "B"), 3), ("rb", ("A", "B"), 3)]
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.registry)


@pytest.fixture(params=BACKENDS)
def registry_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[URL]:
    """An empty database for the registry (SQLite file, or a new PostgreSQL database)."""
    with registry_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def registry(registry_db: URL) -> Iterator[PlateRegistry]:
    registry = PlateRegistry(registry_db.render_as_string(hide_password=False))

    async def prepare() -> None:
        await upgrade(registry.engine)
        await registry.sync_rooms(LAYOUT)

    asyncio.run(prepare())
    yield registry
    asyncio.run(registry.close())
