"""Resort locks on a real server: a record left by a dead holder gets that holder's run closed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fleet import locks, names

pytestmark = pytest.mark.orchestration


async def _run_in_state(client: Any, state: Any) -> Any:
    from prefect import flow

    @flow(name="test-lock-holder-record")
    def holder() -> None:
        pass

    run = await client.create_flow_run(holder, state=state)
    return run.id


async def _scenario(resort: str, state: Any) -> Any:
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.variables import Variable

    async with get_client() as client:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=names.lock_name(resort), limit=1)
        )
        run_id = await _run_in_state(client, state)
        # what a holder leaves when its process dies: a record, and its lease runs out
        stale = {
            "run_id": str(run_id),
            "run_name": "dead-holder",
            "since": "2026-01-01T00:00:00+00:00",
            "host": "pi",
            "pid": 4242,
            "lease_id": "00000000-0000-0000-0000-000000000000",
        }
        await Variable.aset(names.lock_holder_variable_name(resort), stale, overwrite=True)
        held = await locks.acquire(names.lock_name(resort), resort=resort, client=client)
        try:
            holder = await locks.read_holder(resort)
            assert holder is not None and holder.lease_id == str(held.lease_id)
        finally:
            await locks.release(held, client=client)
        return (await client.read_flow_run(run_id)).state


def test_the_run_of_a_holder_whose_lease_expired_is_marked_crashed(prefect_server: Any) -> None:
    from prefect.states import Running

    state = asyncio.run(_scenario("lk-a", Running()))
    assert state.is_crashed(), state
    assert "pi" in state.message and "stopped renewing its lease" in state.message


def test_a_final_run_left_in_a_stale_record_is_left_alone(prefect_server: Any) -> None:
    from prefect.states import Completed

    state = asyncio.run(_scenario("lk-b", Completed()))
    assert state.is_completed(), state
