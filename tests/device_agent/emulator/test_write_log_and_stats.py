"""What the emulated XM430 reports to tests and the control socket: the write log and stats()."""

from __future__ import annotations

import json
from pathlib import Path

from dynamixel_sdk import COMM_SUCCESS

from tests.device_agent.emulator.support import RANGE, Bus, make_bus

# ---------------------------------------------------------------- write log


def test_write_log_records_writes_that_matter(tmp_path: Path) -> None:
    log = tmp_path / "writes.jsonl"
    bus = make_bus(instant=False, fake_clock=True, log=log)
    assert bus.clock is not None
    bus.ok("torque_enable", 1)
    bus.ok("led", 1)  # not logged
    bus.ok("profile_velocity", 100)
    bus.ok("goal_position", 1024)
    bus.clock.advance(0.1)
    bus.ok("goal_position", 0)  # arrives while the first move still runs
    assert bus.write("goal_position", 9999) == (COMM_SUCCESS, RANGE)  # refused: not logged
    bus.model.close()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(w["name"], w["addr"], w["value"], w["moving"]) for w in lines] == [
        ("torque_enable", 64, 1, False),
        ("profile_velocity", 112, 100, False),
        ("goal_position", 116, 1024, False),
        ("goal_position", 116, 0, True),
    ]
    assert all(w["motor_id"] == 1 and w["t"] > 1.6e9 for w in lines)
    assert lines == bus.model.writes


def test_write_log_records_the_watchdog_and_goal_current(bus: Bus) -> None:
    bus.ok("bus_watchdog", 50)
    bus.ok("goal_current", 300)
    bus.ok("led", 1)  # not logged
    bus.model.inject("power-cycle")
    assert [(w["name"], w["addr"], w["value"]) for w in bus.model.writes] == [
        ("bus_watchdog", 98, 50),
        ("goal_current", 102, 300),
        ("power-cycle", None, None),
    ]


# ---------------------------------------------------------------- reads and stats


def test_stats_report_settings_currents_watchdog_and_last_profile(timed: Bus) -> None:
    clock = timed.fake
    stats = timed.model.stats()
    assert {k: stats[k] for k in _STATS_KEYS} == {
        "operating_mode": 3,
        "profile_velocity": 0,
        "profile_acceleration": 0,
        "goal_current": 1193,
        "present_current": 0,
        "bus_watchdog": 0,
        "led": 0,
        "last_profile": None,
    }
    timed.ok("torque_enable", 1)
    timed.ok("led", 1)
    timed.ok("bus_watchdog", 50)
    timed.ok("profile_velocity", 100)
    timed.ok("profile_acceleration", 10)
    timed.ok("goal_current", 800)
    timed.ok("goal_position", 2048)
    clock.advance(0.1)
    stats = timed.model.stats()
    assert {k: stats[k] for k in _STATS_KEYS} == {
        "operating_mode": 3,
        "profile_velocity": 100,
        "profile_acceleration": 10,
        "goal_current": 800,
        "present_current": 100,  # accelerating
        "bus_watchdog": 50,
        "led": 1,
        "last_profile": {"velocity": 100, "acceleration": 10, "kind": 0x30},
    }
    json.dumps(stats)  # what the control socket sends


_STATS_KEYS = (
    "operating_mode",
    "profile_velocity",
    "profile_acceleration",
    "goal_current",
    "present_current",
    "bus_watchdog",
    "led",
    "last_profile",
)
