"""The agent's start-up against a pty emulator (no server): what it does before it serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from device_agent.agent import Agent
from device_agent.errors import CommunicationError
from device_agent.pi_latch import LatchFile
from device_agent.settings import AgentSettings


def _settings(link: Path, state: Path) -> AgentSettings:
    return AgentSettings.model_validate(
        {
            "device": {"name": "st-a", "serial_port": str(link), "hotels": ["A", "B", "C", "D"]},
            "work_pool": "p",
            "work_queue": "st-a",
            "worker_name": "agent-st-a",
            "status_variable": "s",
            "estop_variable": "e",
            "resource_id": "r",
            "state_dir": str(state),
        }
    )


def test_a_servo_slow_to_answer_at_start_leaves_the_agent_faulted_not_dead(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulator(instant=True)
    agent = Agent(_settings(emu.link, tmp_path))

    def timeout(_session: Any) -> None:
        raise CommunicationError("read present_position failed: no status packet (timeout)")

    monkeypatch.setattr(agent, "_read_position", timeout)
    try:
        session = agent.open_device()  # does not raise: the link monitor will reconnect
        assert session.faulted and "timeout" in (session.last_error or "")
    finally:
        agent.close()


def test_a_latched_pi_gets_torque_off_before_anything_else(emulator: Any, tmp_path: Path) -> None:
    from device_agent.cli import main

    emu = emulator(instant=True)
    assert main(["ctl", "--port", str(emu.link), "move", "45"]) == 0
    assert emu.stats()["torque"] is True
    latch = LatchFile.in_state_dir(tmp_path, resort="st-a", serial_port=str(emu.link))
    latch.write(True, "stopped before the agent started", "cmd-1")
    agent = Agent(_settings(emu.link, tmp_path))
    try:
        session = agent.open_device()
        assert session.estopped and session.estop_confirmed is True
        assert emu.stats()["torque"] is False
        assert not session.fleet_latch_known  # and motion waits for the fleet's latch too
    finally:
        agent.close()
