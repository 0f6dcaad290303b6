"""Resort locks on a real server: the record of a holder whose process died gets its run closed."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
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


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


async def _scenario(resort: str, state: Any, *, host: str, pid: int) -> Any:
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
            "host": host,
            "pid": pid,
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


def test_the_run_of_a_holder_whose_process_died_is_marked_crashed(prefect_server: Any) -> None:
    from prefect.states import Running

    state = asyncio.run(_scenario("lk-a", Running(), host=socket.gethostname(), pid=_dead_pid()))
    assert state.is_crashed(), state
    assert "process is gone" in state.message and "took the resort over" in state.message


@pytest.mark.parametrize(
    ("resort", "host", "pid"),
    [
        # a healthy holder whose clear failed: it released and its run is still finishing
        # (the batch benchmark crashed such a run before the process check)
        ("lk-b", socket.gethostname(), os.getpid()),
        ("lk-c", "another-host", 4242),  # cannot tell from here
    ],
)
def test_a_stale_record_of_a_live_or_remote_holder_leaves_its_run_alone(
    prefect_server: Any, resort: str, host: str, pid: int
) -> None:
    from prefect.states import Running

    state = asyncio.run(_scenario(resort, Running(), host=host, pid=pid))
    assert state.is_running(), state


def test_a_final_run_left_in_a_stale_record_is_left_alone(prefect_server: Any) -> None:
    from prefect.states import Completed

    state = asyncio.run(_scenario("lk-d", Completed(), host=socket.gethostname(), pid=_dead_pid()))
    assert state.is_completed(), state
