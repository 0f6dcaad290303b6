"""`fleet unlock`: a lock whose lease is gone is freed; a live holder is never touched.

Against the session's real server (filesystem lease storage under its home). A lease "lost" the
way a Redis restarted without its data loses it is simulated by deleting the lease's file: the
slot stays counted in the database, and no repossessor will ever give it back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from resort_common import names
from tests.support.cli import run_fleet

pytestmark = pytest.mark.orchestration


@pytest.fixture(scope="module")
def inv(prefect_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from fleet.core.inventory import load_inventory
    from fleet.core.provision import provision
    from tests.support.inventories import write_inventory

    directory = tmp_path_factory.mktemp("unlock")
    path = write_inventory(
        directory / "inventory.yaml", "unl", ["u1", "u2"], api_url=prefect_server.api_url
    )
    inventory = load_inventory(path)
    provision(inventory)
    return inventory


def _slots(resort: str) -> int:
    from prefect import get_client

    async def read() -> int:
        async with get_client() as client:
            limit = await client.read_global_concurrency_limit_by_name(names.lock_name(resort))
            return int(limit.active_slots)

    return asyncio.run(read())


def _holder(resort: str) -> Any:
    from fleet.core.locks import read_holder

    return asyncio.run(read_holder(resort))


def _take(resort: str) -> Any:
    """Take `resort`'s lock as a scheduler would, and stop renewing it (its holder 'died')."""
    from fleet.core import locks

    held = asyncio.run(locks.acquire(names.lock_name(resort), timeout=10, resort=resort))
    held.stop_renewal("the test's holder died")
    return held


def _unlock(inv: Any, *argv: str) -> tuple[int, str, str]:
    return run_fleet(["unlock", *argv, "--inventory", str(inv.path)])


def test_a_free_lock_is_left_alone(inv: Any) -> None:
    assert _slots("u1") == 0
    code, out, err = _unlock(inv, "u1")
    assert (code, err) == (0, "")
    assert out.strip() == f"u1: lock {names.lock_name('u1')} is free; nothing to do"


def test_a_live_holder_is_never_freed(inv: Any) -> None:
    from fleet.core import locks

    held = _take("u1")
    try:
        code, out, err = _unlock(inv, "u1", "--force")
        assert code == 4, (out, err)
        assert out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert "with a live lease" in lines[0] and str(held.lease_id) not in lines[0]
        assert _slots("u1") == 1
        holder = _holder("u1")
        assert holder is not None and holder.lease_id == str(held.lease_id)
    finally:
        asyncio.run(locks.release(held))
    assert _slots("u1") == 0


def test_a_lock_whose_lease_is_lost_is_freed_and_taken_again(inv: Any, prefect_server: Any) -> None:
    from fleet.core import locks
    from fleet.core.errors import DeviceBusyError

    held = _take("u2")
    lease_file = Path(prefect_server.home) / "concurrency_leases" / f"{held.lease_id}.json"
    assert lease_file.exists()
    lease_file.unlink()  # the lease is gone, the slot still counted: what an emptied Redis leaves
    assert _slots("u2") == 1
    with pytest.raises(DeviceBusyError):
        asyncio.run(locks.acquire(names.lock_name("u2"), timeout=2, resort="u2"))

    code, out, err = _unlock(inv, "u2")
    assert (code, err) == (0, ""), err
    assert out.strip().startswith(f"u2: lock {names.lock_name('u2')} freed (the lease of process")
    assert _slots("u2") == 0
    assert _holder("u2") is None

    again = asyncio.run(locks.acquire(names.lock_name("u2"), timeout=10, resort="u2"))
    asyncio.run(locks.release(again))
    assert _slots("u2") == 0


def test_a_lock_counted_without_a_holder_record_needs_force(inv: Any) -> None:
    from prefect import get_client

    from fleet.core import prefect_adapter

    async def count_one() -> None:
        async with get_client() as client:
            await prefect_adapter.set_active_slots(client, names.lock_name("u1"), 1)

    asyncio.run(count_one())
    assert _holder("u1") is None
    code, out, err = _unlock(inv, "u1")
    assert code == 4
    assert "no holder record" in err and "--force" in err
    assert _slots("u1") == 1

    code, out, err = _unlock(inv, "u1", "--force")
    assert (code, err) == (0, "")
    assert out.strip() == f"u1: lock {names.lock_name('u1')} freed (no holder record)"
    assert _slots("u1") == 0


def test_bad_input_is_one_line_and_changes_nothing(inv: Any) -> None:
    code, out, err = _unlock(inv, "nope")
    assert code == 1  # as `fleet drain` and `fleet resume` of an unknown resort
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "unknown resort 'nope'" in err and "Traceback" not in err
    assert _slots("u1") == 0 and _slots("u2") == 0
