"""resort_common.documents: the status and latch documents round-trip and never raise on read."""

from __future__ import annotations

import datetime
import json

import pytest

from resort_common.documents import AgentStatus, EstopLatch


def test_status_round_trips_through_its_json_document() -> None:
    now = datetime.datetime(2026, 12, 7, 7, 0, tzinfo=datetime.UTC)
    status = AgentStatus(name="resort-a", online=True, position=90.0, updated_at=now)
    document = status.to_document()
    assert json.loads(json.dumps(document)) == document
    assert AgentStatus.parse(document) == status
    assert AgentStatus.parse(json.dumps(document)) == status


@pytest.mark.parametrize(
    "value",
    [None, "", "not json", "[1, 2]", 42, {"online": True}, {"name": "a", "position": "north"}],
    ids=["none", "empty", "text", "list", "number", "no-name", "bad-type"],
)
def test_an_unreadable_status_reads_as_unknown(value: object) -> None:
    assert AgentStatus.parse(value) is None


def test_a_status_without_a_time_zone_is_refused() -> None:
    """A naive time could not be compared with the reader's clock: the document is unreadable."""
    assert AgentStatus.parse({"name": "a", "updated_at": "2026-12-07T07:00:00"}) is None


def test_unknown_keys_from_a_newer_writer_are_ignored() -> None:
    status = AgentStatus.parse({"name": "a", "online": True, "plates": 3})
    assert status is not None and status.online


def test_latch_reads_what_fleet_estop_writes() -> None:
    latch = EstopLatch.parse(
        {"estopped": True, "reason": "door", "command_id": "c1", "at": "2026-12-07T07:00:00+00:00"}
    )
    assert latch == EstopLatch(
        estopped=True, reason="door", command_id="c1", at="2026-12-07T07:00:00+00:00"
    )
    assert EstopLatch.parse({}) == EstopLatch()
    assert EstopLatch.parse("garbage") is None
