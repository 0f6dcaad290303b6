"""A fresh, migrated plate registry on SQLite for each test (two resorts, hotels A and B)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.core.plates import PlateRegistry
from fleet.core.plates.database import upgrade

LAYOUT = [("ra", ("A", "B"), 3), ("rb", ("A", "B"), 3)]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[PlateRegistry]:
    registry = PlateRegistry(f"sqlite+aiosqlite:///{tmp_path / 'plates.db'}")

    async def prepare() -> None:
        await upgrade(registry.engine)
        await registry.sync_rooms(LAYOUT)

    asyncio.run(prepare())
    yield registry
    asyncio.run(registry.close())
