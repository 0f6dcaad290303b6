"""The agent's status loop: a publication that hangs is abandoned and retried, not waited out."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from device_agent.agent import Agent
from device_agent.agent import status as status_module
from fleet.core.inventory import load_inventory
from flows.agent_settings import agent_settings_for
from tests.support.inventories import write_inventory


def test_a_hanging_status_publication_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv = load_inventory(write_inventory(tmp_path / "inv.yaml", "sl", ["sl-a"]))
    agent = Agent(agent_settings_for(inv, "sl-a", state_dir=tmp_path))
    publisher = agent.publisher
    monkeypatch.setattr(status_module, "STATUS_TIMEOUT", 0.2)
    published: list[float] = []

    async def publish(client: Any, status: Any) -> None:
        if not published:
            published.append(-1.0)
            await asyncio.sleep(3600)  # the request that never gets an answer
        published.append(asyncio.get_running_loop().time())

    monkeypatch.setattr(publisher, "_publish", publish)

    async def scenario() -> None:
        publisher.bind()
        publisher.notify()
        loop = asyncio.create_task(publisher.run(client=None))
        try:
            for _ in range(100):
                if len(published) >= 2:
                    break
                await asyncio.sleep(0.05)
        finally:
            loop.cancel()

    asyncio.run(scenario())
    assert len(published) >= 2  # hung once, then published within ~1.2 s


def test_a_latch_publication_waits_for_a_stale_one_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A status read before an e-stop clear must not land after the clear's own write."""
    inv = load_inventory(write_inventory(tmp_path / "inv.yaml", "sl", ["sl-a"]))
    agent = Agent(agent_settings_for(inv, "sl-a", state_dir=tmp_path))
    publisher = agent.publisher
    writes: list[str] = []
    in_flight = asyncio.Event()

    async def slow_publish(client: Any, status: Any) -> None:
        in_flight.set()
        await asyncio.sleep(0.2)  # a write queued behind others on the server
        writes.append("stale")

    async def set_variable(client: Any, name: str, value: Any) -> None:
        writes.append("latch")

    monkeypatch.setattr(publisher, "_publish", slow_publish)
    monkeypatch.setattr(status_module, "set_variable", set_variable)

    async def scenario() -> None:
        stale = asyncio.create_task(publisher.publish_current(client=None))
        await in_flight.wait()  # the status was read; now the latch changes and is published
        await publisher.publish_now(client=object())
        await stale

    asyncio.run(scenario())
    assert writes == ["stale", "latch"]


class _ProbeSession:
    """The fields `_probe_position` reads, and which of its writes would publish."""

    def __init__(self, driver: Any) -> None:
        self.name = "sl-a"
        self.driver = driver
        self.connected = True
        self.position: float | None = None
        self.active_hotel: str | None = None
        self.health: dict[str, Any] | None = None
        self.published = 0

    def note(self, **fields: Any) -> None:
        for key, value in fields.items():
            setattr(self, key, value)

    def update(self, **fields: Any) -> None:
        self.note(**fields)
        self.published += 1


def test_an_idle_probe_publishes_at_once_only_what_changed(tmp_path: Path) -> None:
    from device_agent.results import Health

    inv = load_inventory(write_inventory(tmp_path / "inv.yaml", "sl", ["sl-a"]))
    agent = Agent(agent_settings_for(inv, "sl-a", state_dir=tmp_path))
    reading: dict[str, Any] = {"position": 90.0, "hotel": "B", "errors": [], "temperature": 30.0}

    class Driver:
        def request_position(self) -> float:
            return float(reading["position"])

        def request_active_hotel(self) -> str:
            return str(reading["hotel"])

        def request_health(self) -> Health:
            return Health(reading["temperature"], 12.0, 0.0, True, False, list(reading["errors"]))

    session = _ProbeSession(Driver())
    probe = agent._probe_position
    probe(session)  # type: ignore[arg-type]
    assert session.published == 1  # the first reading

    reading.update(position=90.088, temperature=31.0)  # one encoder tick, a warmer motor
    probe(session)  # type: ignore[arg-type]
    assert session.published == 1  # rides on the next heartbeat publication
    assert session.health is not None and session.health["temperature"] == 31.0

    reading.update(position=97.0)  # turned by hand
    probe(session)  # type: ignore[arg-type]
    assert session.published == 2

    reading.update(hotel="C")
    probe(session)  # type: ignore[arg-type]
    assert session.published == 3

    reading.update(errors=["overload"])
    probe(session)  # type: ignore[arg-type]
    assert session.published == 4

    session.connected = False  # the link came back
    probe(session)  # type: ignore[arg-type]
    assert session.published == 5 and session.connected
