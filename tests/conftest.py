"""Session fixtures shared by every test package: a real Prefect server on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.prefect_server import PrefectServer, prefect_pointed_at, start_prefect_server


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A real Prefect server (SQLite, or PostgreSQL when FLEET_TEST_DATABASE_URL is set).

    The test process's own Prefect settings point at it for the whole session.
    """
    home = Path(tmp_path_factory.mktemp("prefect-home"))
    server = start_prefect_server(home, database_url=os.environ.get("FLEET_TEST_DATABASE_URL"))
    try:
        with prefect_pointed_at(server):
            yield server
    finally:
        server.stop()


@pytest.fixture
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Factory ``emulator(link=None, **options) -> EmulatorProcess`` (tests.support.emulator).

    Each call starts an XM430 emulator process on a pty (default link: a fresh short temp dir's
    ``ttyDXL``); every one started is stopped at teardown.
    """
    from tests.support.emulator import EmulatorProcess, start_emulator

    started: list[EmulatorProcess] = []

    def factory(link: Path | None = None, **options: Any) -> EmulatorProcess:
        if link is None:
            link = Path(tmp_path_factory.mktemp("emu")) / "ttyDXL"
        emu = start_emulator(Path(link), **options)
        started.append(emu)
        return emu

    try:
        yield factory
    finally:
        for emu in started:
            emu.stop()
