"""Lock hand-off: how soon a scheduler waiting for a busy resort starts once the holder lets go.

Against a fresh local server (SQLite) with one provisioned resort (no agent needed): this process
takes the resort's lock; a waiter in another process (a second scheduler, as in a lab) asks for
it and announces itself (`fleet.core.locks.waiting`); once it has waited past its first polls,
this process releases, with the API client it holds open (as a running scheduler does). The
hand-off is the waiter's grant time minus the moment the release was called (both clocks are
this host's), n times; the holder's release wakes the waiter through its release event
(`fleet.core.locks.release_events`). The baseline, measured in the same run, is a waiter in this
process, woken by the release itself (`LocalWaiters`).

Env: `BENCH_LOCK_N` (default 10).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: the waiter, a running scheduler with its API client open (a parent flow run's): take the lock,
#: print the grant time (epoch s), give it back
WAITER = """
import asyncio, sys, time
from prefect.client.orchestration import get_client
from fleet.core import locks
from resort_common import names

async def main():
    async with get_client() as client:
        held = await locks.acquire(
            names.lock_name(sys.argv[1]), resort=sys.argv[1], timeout=120, client=client
        )
        print(f"granted {time.time():.6f}", flush=True)
        await locks.release(held, client=client)

asyncio.run(main())
"""
#: seconds the waiter waits before the release (past its first, fast polls: a steady waiter)
SETTLE = 2.0


def run(results_dir: Path) -> dict[str, Any]:
    """Run the hand-off benchmark; return its numbers."""
    from tests.support.inventories import write_inventory
    from tests.support.prefect_server import prefect_pointed_at, start_prefect_server

    n = int(os.environ.get("BENCH_LOCK_N", "10"))
    work = Path(tempfile.mkdtemp(prefix="bench-lock-"))
    server = start_prefect_server(work / "home")
    try:
        with prefect_pointed_at(server):
            from fleet.core.inventory import load_inventory
            from fleet.core.provision import provision

            path = write_inventory(work / "inventory.yaml", "lk", ["lk-a"], api_url=server.api_url)
            provision(load_inventory(path))
            other = [_cross_process("lk-a", server.env) for _ in range(n)]
            local = [asyncio.run(_in_process("lk-a")) for _ in range(n)]
    finally:
        server.stop()
    return {
        "n": n,
        "other_process": _stats(other),
        "same_process_baseline": _stats(local),
    }


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_s": round(statistics.median(ordered), 4),
        "p95_s": round(ordered[max(0, round(0.95 * len(ordered)) - 1)], 4),
        "max_s": round(ordered[-1], 4),
    }


def _cross_process(resort: str, env: dict[str, str]) -> float:
    """One hand-off to a waiter in another process (seconds)."""
    from fleet.core import locks
    from fleet.core.locks.waiting import someone_waiting
    from resort_common import names

    async def hand_off() -> tuple[float, str]:
        from prefect.client.orchestration import get_client

        # the holder is a running scheduler: its API client is open and warm
        async with get_client() as client:
            held = await locks.acquire(names.lock_name(resort), resort=resort, client=client)
            waiter = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                WAITER,
                resort,
                env={**os.environ, **env},
                stdout=subprocess.PIPE,
                cwd=Path(__file__).resolve().parent.parent,
            )
            try:
                deadline = time.monotonic() + 60
                while not await someone_waiting(resort, client):
                    if time.monotonic() > deadline or waiter.returncode is not None:
                        raise RuntimeError("the waiter never announced itself")
                    await asyncio.sleep(0.1)
                await asyncio.sleep(SETTLE)
                released = time.time()
                await locks.release(held, client=client)
                out, _ = await asyncio.wait_for(waiter.communicate(), 60)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    waiter.kill()
        return released, out.decode()

    released, out = asyncio.run(hand_off())
    granted = float(out.split("granted", 1)[1].split()[0])
    return granted - released


async def _in_process(resort: str) -> float:
    """One hand-off to a waiter on this event loop, both with the open API client (seconds)."""
    from prefect.client.orchestration import get_client

    from fleet.core import locks
    from resort_common import names

    name = names.lock_name(resort)
    async with get_client() as client:
        held = await locks.acquire(name, resort=resort, client=client)
        granted: list[float] = []

        async def wait() -> None:
            mine = await locks.acquire(name, resort=resort, timeout=120, client=client)
            granted.append(time.time())
            await locks.release(mine, client=client)

        task = asyncio.ensure_future(wait())
        await asyncio.sleep(SETTLE)
        released = time.time()
        await locks.release(held, client=client)
        await task
    return granted[0] - released


if __name__ == "__main__":  # pragma: no cover - manual run
    import json

    print(json.dumps(run(Path("bench/results")), indent=2))
