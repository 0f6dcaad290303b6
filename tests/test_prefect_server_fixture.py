"""The shared server fixture starts a real Prefect server that answers the client."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.orchestration


def test_server_answers_the_client(prefect_server):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        assert client.api_healthcheck() is None
        pools = client.read_work_pools(limit=10)
    assert isinstance(pools, list)
    assert prefect_server.api_url.startswith("http://127.0.0.1:")
