"""Fixtures of the end-to-end tests: the fault suite's own Prefect server (tests.support.chaos)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.chaos import point_at
from tests.support.prefect_server import PrefectServer, start_prefect_server


@pytest.fixture(scope="module")
def chaos_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A server of this module's own (restarted by a test); this process points at it."""
    home = Path(tmp_path_factory.mktemp("chaos-server"))
    server = start_prefect_server(home)
    saved = tuple(
        os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_CLIENT_MAX_RETRIES")
    )
    # SQLite answers bursts of concurrent writes (200 racing parents) with 503, more often than
    # Prefect's default of 5 client retries covers. Agents inherit this setting.
    point_at(server.api_url, str(home / "client"), "10")
    try:
        yield server
    finally:
        server.stop()
        point_at(*saved)
