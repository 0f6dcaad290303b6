"""Agents' periodic requests are drawn apart (`device_agent.pacing`), never later than their period.

A burst of 50 agents' status writes and queue polls every 15 s doubled dispatch latency in
`make bench-ha` while the agents stayed in step; each wait is now drawn afresh.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from device_agent import pacing
from device_agent.agent import Agent
from device_agent.agent.link_monitor import LinkMonitor
from device_agent.worker.pickup import QueuePickup
from fleet.core.inventory import load_inventory
from flows.agent_settings import agent_settings_for
from tests.support.inventories import write_inventory


class _Shortest(random.Random):
    """Every draw shortens the wait the most: (1 - JITTER) x period."""

    def random(self) -> float:
        return 1.0


def test_a_wait_lies_within_the_jitter_and_never_exceeds_its_period() -> None:
    rng = random.Random(3)
    waits = [pacing.jittered(15.0, rng) for _ in range(2000)]
    assert min(waits) >= 15.0 * (1 - pacing.JITTER)
    assert max(waits) <= 15.0
    # spread over the whole band (agents in step drift apart), not a fixed offset
    assert max(waits) - min(waits) > 0.9 * 15.0 * pacing.JITTER


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def test_the_status_heartbeat_wait_is_drawn_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv = load_inventory(write_inventory(tmp_path / "inv.yaml", "pc", ["pc-a"]))
    settings = agent_settings_for(inv, "pc-a", state_dir=tmp_path).model_copy(
        update={"heartbeat": 2.0}
    )
    publisher = Agent(settings).publisher
    monkeypatch.setattr(pacing, "_rng", _Shortest())
    published: list[float] = []

    async def publish(client: Any, status: Any) -> None:
        published.append(asyncio.get_running_loop().time())

    monkeypatch.setattr(publisher, "_publish", publish)

    async def scenario() -> None:
        publisher.bind()
        loop = asyncio.create_task(publisher.run(client=None))
        try:
            while len(published) < 3:
                await asyncio.sleep(0.02)
        finally:
            loop.cancel()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    gaps = _gaps(published)
    # a fixed 2 s heartbeat would give gaps of at least 2 s every time; drawn: 1.5 s + overhead
    assert all(1.5 <= g < 1.9 for g in gaps), gaps


def test_the_fallback_poll_wait_is_drawn_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pacing, "_rng", _Shortest())
    polls: list[float] = []
    worker = SimpleNamespace(stopping=False, busy=False, poll_interval=2.0)

    async def get_and_submit_flow_runs() -> list[Any]:
        polls.append(asyncio.get_running_loop().time())
        if len(polls) >= 3:
            worker.stopping = True
        return []

    worker.get_and_submit_flow_runs = get_and_submit_flow_runs
    pickup = QueuePickup(worker)  # type: ignore[arg-type]

    async def scenario() -> None:
        pickup.bind()
        await pickup.poll_loop()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    gaps = _gaps(polls)
    assert all(1.5 <= g < 1.9 for g in gaps), gaps  # a fixed 2 s poll: at least 2 s


def test_the_idle_probe_wait_is_drawn_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each probe publishes the status: agents started together must not probe in step."""
    monkeypatch.setattr(pacing, "_rng", _Shortest())
    session = SimpleNamespace(connected=True, current_run=None, motion_lock=threading.Lock())
    shutdown = threading.Event()
    probes: list[float] = []

    def read_position(_: Any) -> None:
        probes.append(time.monotonic())
        if len(probes) >= 3:
            shutdown.set()

    monitor = LinkMonitor(session, shutdown, 2.0, read_position)  # type: ignore[arg-type]
    monitor.start()
    assert shutdown.wait(30)
    gaps = _gaps(probes)
    assert all(1.5 <= g < 1.9 for g in gaps), gaps  # a fixed 2 s interval: at least 2 s
