"""Waiting announcements (`fleet.core.locks.waiting`): a resort's waiter says it waits, for as long
as it waits, against the session's real server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from fleet.core import locks
from fleet.core.errors import DeviceBusyError
from fleet.core.locks.waiting import is_live, someone_waiting
from resort_common import names


def test_an_announcement_is_live_until_its_time() -> None:
    now = time.time()
    assert is_live({"waiter": "w", "until": now + 5}, now)
    assert not is_live({"waiter": "w", "until": now - 1}, now)
    assert not is_live({"waiter": "w"}, now)
    assert not is_live(None, now)
    assert not is_live("waiting", now)


@pytest.fixture(scope="module")
def inv(prefect_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from fleet.core.inventory import load_inventory
    from fleet.core.provision import provision
    from tests.support.inventories import write_inventory

    directory = tmp_path_factory.mktemp("waiting")
    path = write_inventory(
        directory / "inventory.yaml", "wai", ["w1"], api_url=prefect_server.api_url
    )
    inventory = load_inventory(path)
    provision(inventory)
    return inventory


@pytest.mark.orchestration
def test_a_waiter_announces_itself_while_it_waits_and_withdraws_once_granted(inv: Any) -> None:
    async def scenario() -> list[bool]:
        seen: list[bool] = [await someone_waiting("w1")]
        holder = await locks.acquire(names.lock_name("w1"), resort="w1")
        waiter = asyncio.ensure_future(locks.acquire(names.lock_name("w1"), resort="w1"))
        await asyncio.sleep(1.0)
        seen.append(await someone_waiting("w1"))
        await locks.release(holder)
        granted = await waiter
        # withdrawn in the background right after the grant: well before it would lapse (10 s)
        deadline = time.monotonic() + 3.0
        while await someone_waiting("w1") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        seen.append(await someone_waiting("w1"))
        await locks.release(granted)
        return seen

    assert asyncio.run(scenario()) == [False, True, False]


@pytest.mark.orchestration
def test_a_waiter_that_gives_up_withdraws(inv: Any) -> None:
    async def scenario() -> tuple[bool, bool]:
        holder = await locks.acquire(names.lock_name("w1"), resort="w1")
        try:
            with pytest.raises(DeviceBusyError):
                await locks.acquire(names.lock_name("w1"), resort="w1", timeout=1.0)
            return await someone_waiting("w1"), holder.lost.is_set()
        finally:
            await locks.release(holder)

    assert asyncio.run(scenario()) == (False, False)


@pytest.mark.orchestration
def test_a_release_wakes_a_waiter_that_no_local_release_or_poll_would(
    inv: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleet.core.locks import slots

    # the waiter's polls are 1000 s apart and it queues in a registry of its own (as a waiter in
    # another process does): only the holder's release event can wake it before its timeout
    for poll in ("FIRST_POLL", "HEAD_POLL", "TAIL_POLL"):
        monkeypatch.setattr(slots, poll, 1000.0)

    async def scenario() -> bool:
        name = names.lock_name("w1")
        holder = await locks.acquire(name, resort="w1")
        elsewhere = locks.LocalWaiters()
        waiter = asyncio.ensure_future(
            locks.acquire(name, resort="w1", timeout=60, waiters=elsewhere)
        )
        await asyncio.sleep(3.0)  # refused once, then subscribed to the lock's release events
        waiting = not waiter.done()
        await locks.release(holder)
        granted = await asyncio.wait_for(waiter, 30)
        await locks.release(granted)
        return waiting

    assert asyncio.run(scenario())
