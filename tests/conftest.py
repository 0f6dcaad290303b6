"""Session fixtures shared by every test package: a real Prefect server on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.prefect_server import PrefectServer, start_prefect_server


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A real Prefect server (SQLite, or PostgreSQL when FLEET_TEST_DATABASE_URL is set).

    The test process's own Prefect settings point at it for the whole session.
    """
    home = Path(tmp_path_factory.mktemp("prefect-home"))
    server = start_prefect_server(home, database_url=os.environ.get("FLEET_TEST_DATABASE_URL"))
    saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME")}
    os.environ["PREFECT_API_URL"] = server.api_url
    os.environ["PREFECT_HOME"] = str(home / "client")
    try:
        yield server
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
