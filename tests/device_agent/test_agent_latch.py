"""E-stop latch commands arrive as events, replays and variable reads; a late copy changes nothing.

The agent's handlers run here against a real Prefect server and an in-memory motor: no agent
process, so the order of the copies is the test's to choose.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import pytest

from device_agent.agent import Agent
from device_agent.latch import LatchLedger
from device_agent.pi_latch import LatchFile
from device_agent.session import DeviceSession
from fleet.core.inventory import load_inventory
from flows.agent_settings import agent_settings_for
from resort_common import names
from resort_common.events import ESTOP_CLEAR_EVENT, ESTOP_EVENT
from tests.device_agent.driver_support import make_rig
from tests.support.inventories import write_inventory

pytestmark = pytest.mark.orchestration


def test_ledger_applies_each_command_once_and_forgets_the_oldest() -> None:
    ledger = LatchLedger(size=2)
    assert ledger.first_time("a") and not ledger.first_time("a")
    assert ledger.first_time(None) and ledger.first_time(None)  # no id: always applied
    assert ledger.first_time("b") and ledger.first_time("c")
    assert ledger.first_time("a")  # forgotten after two newer ids
    assert not ledger.first_time("c")


@pytest.fixture
def agent(prefect_server: Any, tmp_path: Path) -> Agent:
    inv = load_inventory(write_inventory(tmp_path / "inv.yaml", "lt", ["lt-a"]))
    agent = Agent(agent_settings_for(inv, "lt-a", state_dir=tmp_path))
    rig = make_rig()
    latch = LatchFile.in_state_dir(tmp_path, resort="lt-a", serial_port="memory")
    agent.session = DeviceSession(rig.driver, name="lt-a", serial_port="memory", latch_file=latch)
    return agent


def _sync_after_writing(agent: Agent, latch: dict[str, Any]) -> None:
    """Write the latch variable, then let the agent read and apply it (as on a heartbeat)."""
    from prefect import get_client
    from prefect.variables import Variable

    Variable.set(names.estop_variable_name("lt-a"), latch, overwrite=True)

    async def sync() -> None:
        async with get_client() as client:
            await agent.estop.sync_latch(client)

    asyncio.run(sync())


def test_a_stale_stop_does_not_undo_the_clear_that_followed_it(
    agent: Agent,
) -> None:
    session = agent.session
    assert session is not None
    stop = {"reason": "test", "command_id": "stop-1"}
    asyncio.run(agent.estop.apply_event(session, ESTOP_EVENT, stop))
    assert session.estopped
    asyncio.run(agent.estop.apply_event(session, ESTOP_CLEAR_EVENT, {"command_id": "clear-1"}))
    assert not session.estopped

    # a latch read answered while the resort was still stopped, arriving after the clear
    _sync_after_writing(agent, {"estopped": True, **stop})
    assert not session.estopped
    # the stop event replayed by a reconnecting subscription
    asyncio.run(agent.estop.apply_event(session, ESTOP_EVENT, stop))
    assert not session.estopped

    # a new stop is applied from the variable alone (its event was lost)
    _sync_after_writing(agent, {"estopped": True, "reason": "new", "command_id": "stop-2"})
    assert session.estopped and session.estop_reason == "new"
    # a late copy of the older clear does not release it
    _sync_after_writing(agent, {"estopped": False, "command_id": "clear-1"})
    assert session.estopped
    # a clear with no time cannot be ordered after the Pi's latch: it does not release it
    _sync_after_writing(agent, {"estopped": False, "command_id": "clear-2"})
    assert session.estopped
    # a new clear from the variable, given after the stop, releases both latches
    later = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)).isoformat()
    _sync_after_writing(agent, {"estopped": False, "command_id": "clear-3", "at": later})
    assert not session.estopped
    assert session.latch_file is not None and session.latch_file.latched() is None
