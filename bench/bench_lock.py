"""Lock hand-off: how soon a scheduler waiting for a busy resort starts once the holder lets go.

Against a fresh local server (SQLite) with one provisioned resort (no agent needed): this process
takes the resort's lock; a waiter in another process (a second scheduler, as in a lab) asks for
it and announces itself (`fleet.core.locks.waiting`); once it has waited past its first polls,
this process releases. The hand-off is the waiter's grant time minus the moment the release was
called (both clocks are this host's), n times. The baseline, measured in the same run, is a
waiter in this process, woken by the release itself (`LocalWaiters`).

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

#: the waiter: take the lock, print the grant time (epoch s), give it back
WAITER = """
import asyncio, sys, time
from fleet.core import locks
from resort_common import names

async def main():
    held = await locks.acquire(names.lock_name(sys.argv[1]), resort=sys.argv[1], timeout=120)
    print(f"granted {time.time():.6f}", flush=True)
    await locks.release(held)

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

    async def hold() -> Any:
        return await locks.acquire(names.lock_name(resort), resort=resort)

    held = asyncio.run(hold())
    waiter = subprocess.Popen(
        [sys.executable, "-c", WAITER, resort],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        deadline = time.monotonic() + 60
        while not asyncio.run(someone_waiting(resort)):
            if time.monotonic() > deadline or waiter.poll() is not None:
                raise RuntimeError("the waiter never announced itself")
            time.sleep(0.1)
        time.sleep(SETTLE)
        released = time.time()
        asyncio.run(locks.release(held))
        out, _ = waiter.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            waiter.kill()
    granted = float(out.split("granted", 1)[1].split()[0])
    return granted - released


async def _in_process(resort: str) -> float:
    """One hand-off to a waiter on this event loop (seconds)."""
    from fleet.core import locks
    from resort_common import names

    held = await locks.acquire(names.lock_name(resort), resort=resort)
    granted: list[float] = []

    async def wait() -> None:
        mine = await locks.acquire(names.lock_name(resort), resort=resort, timeout=120)
        granted.append(time.time())
        await locks.release(mine)

    task = asyncio.ensure_future(wait())
    await asyncio.sleep(SETTLE)
    released = time.time()
    await locks.release(held)
    await task
    return granted[0] - released


if __name__ == "__main__":  # pragma: no cover - manual run
    import json

    print(json.dumps(run(Path("bench/results")), indent=2))
