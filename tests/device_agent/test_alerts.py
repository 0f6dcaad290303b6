"""`AlertTracker`: incident edges from published statuses, remembered across agent restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from device_agent.alerts import AlertTracker, conditions
from resort_common.events import cleared_event, raised_event


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _status(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "online": True,
        "connected": True,
        "estopped": False,
        "estop_reason": None,
        "last_error": None,
        "health": {"hardware_errors": []},
        "current_run": None,
    }
    return {**base, **fields}


def _tracker(path: Path | None, clock: Clock, offline_after: float | None = 60.0):
    events: list[tuple[str, dict[str, Any]]] = []
    tracker = AlertTracker(
        path,
        worker="agent-r1",
        emit=lambda name, payload: events.append((name, payload)),
        offline_after=offline_after,
        clock=clock,
    )
    return tracker, events


def test_conditions_name_each_incident() -> None:
    status = _status(
        connected=False,
        last_error="PortLostError: /dev/ttyUSB0 gone",
        estopped=True,
        estop_reason="arm inside",
        health={"hardware_errors": ["overload", "overheating"]},
    )
    assert conditions(status) == {
        "hardware-error": "servo hardware error: overload, overheating (torque is off)",
        "link-lost": "serial link lost: PortLostError: /dev/ttyUSB0 gone",
        "estop": "e-stop engaged: arm inside",
    }
    assert conditions(_status()) == {}


def test_each_incident_is_raised_once_and_cleared_once(tmp_path: Path) -> None:
    clock = Clock()
    tracker, events = _tracker(tmp_path / "alerts.json", clock)
    tracker.observe(_status(estopped=True, estop_reason="door", current_run="run-1"))
    tracker.observe(_status(estopped=True, estop_reason="door"))  # still engaged: nothing new
    clock.now += 90
    tracker.observe(_status())
    assert [name for name, _ in events] == [raised_event("estop"), cleared_event("estop")]
    raised, cleared = events[0][1], events[1][1]
    assert raised["message"] == "e-stop engaged: door" and raised["run"] == "run-1"
    assert raised["worker"] == "agent-r1" and raised["kind"] == "estop"
    assert cleared["message"] == "e-stop cleared after 90 s"
    assert cleared["since"] == raised["since"]


def test_a_restarted_agent_neither_repeats_nor_forgets_an_incident(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "alerts.json"
    first, events = _tracker(path, clock)
    first.observe(_status(connected=False, last_error="gone"))
    assert [n for n, _ in events] == [raised_event("link-lost")]
    second, events2 = _tracker(path, clock)  # the agent restarted, the link is still down
    second.observe(_status(connected=False, last_error="gone"))
    assert events2 == []
    third, events3 = _tracker(path, clock)  # and once more, the link came back meanwhile
    third.observe(_status())
    assert [n for n, _ in events3] == [cleared_event("link-lost")]


def test_offline_status_changes_nothing(tmp_path: Path) -> None:
    tracker, events = _tracker(tmp_path / "alerts.json", Clock())
    tracker.observe(_status(online=False, estopped=True))
    assert events == [] and tracker.open == {}


def test_return_after_a_silence_past_the_bound_clears_agent_offline(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "alerts.json"
    tracker, events = _tracker(path, clock, offline_after=60.0)
    tracker.beat()
    clock.now += 2  # the next beat is recorded too (at most one write per second)
    tracker.beat()
    clock.now += 300  # killed: no clean stop recorded
    restarted, events2 = _tracker(path, clock, offline_after=60.0)
    restarted.beat()
    assert events == []
    assert [n for n, _ in events2] == [cleared_event("agent-offline")]
    assert events2[0][1]["message"] == "agent back online after 5 min without a heartbeat"


def test_no_return_reported_after_a_clean_stop_or_a_short_gap(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "alerts.json"
    tracker, _ = _tracker(path, clock)
    tracker.beat()
    tracker.stopped()
    clock.now += 3600
    after_stop, events = _tracker(path, clock)
    after_stop.beat()
    clock.now += 30  # within the 60 s bound
    killed_quickly, events2 = _tracker(path, clock)
    killed_quickly.beat()
    assert events == [] and events2 == []


def test_without_alerts_no_return_is_reported(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "alerts.json"
    tracker, _ = _tracker(path, clock, offline_after=None)
    tracker.beat()
    clock.now += 3600
    again, events = _tracker(path, clock, offline_after=None)
    again.beat()
    assert events == []


def test_unreadable_record_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    path.write_text("{not json")
    tracker, events = _tracker(path, Clock())
    tracker.observe(_status(estopped=True))
    assert [n for n, _ in events] == [raised_event("estop")]
