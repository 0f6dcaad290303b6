"""Which events the parent-run watchdog automation reacts to (`fleet.core.watchdog.automation`).

The trigger is handed to Prefect's own server-side trigger model, so `covers` is the very
matching the server applies to each event.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fleet.core import watchdog
from fleet.core.inventory import load_inventory
from resort_common import names
from tests.support.inventories import write_inventory


@pytest.fixture(scope="module")
def inv(tmp_path_factory):
    return load_inventory(
        write_inventory(Path(tmp_path_factory.mktemp("wd")) / "inv.yaml", "wd", ["wd-a"])
    )


@pytest.fixture(scope="module")
def trigger(inv):
    from prefect.server.events.schemas.automations import EventTrigger

    core = watchdog.automation(inv)
    return EventTrigger.model_validate(core.trigger.model_dump(mode="json"))


def _event(name: str, flow: str, tags: list[str], labels: dict[str, str] | None = None):
    from prefect.server.events.schemas.events import ReceivedEvent

    related = [
        {
            "prefect.resource.id": f"prefect.flow.{uuid.uuid4()}",
            "prefect.resource.role": "flow",
            "prefect.resource.name": flow,
        },
        *(
            {"prefect.resource.id": f"prefect.tag.{t}", "prefect.resource.role": "tag"}
            for t in tags
        ),
    ]
    return ReceivedEvent(
        occurred=datetime.now(UTC),
        event=name,
        resource={"prefect.resource.id": f"prefect.flow-run.{uuid.uuid4()}", **(labels or {})},
        related=related,
        id=uuid.uuid4(),
    )


@pytest.mark.parametrize("flow", sorted(names.PARENT_FLOWS))
def test_a_tagged_parent_run_is_watched_from_its_running_state(trigger, flow) -> None:
    running = _event(watchdog.START_EVENT, flow, ["fleet:wd"])
    assert trigger.covers(running) and trigger.starts_after(running.event)
    assert not trigger.expects(running.event)  # Running opens the window, it does not close it
    assert not trigger.expects("prefect.flow-run.Cancelling")  # nor does a state short of final


def test_the_heartbeat_alone_names_the_fleet_for_an_untagged_parent(trigger) -> None:
    beat = _event(watchdog.HEARTBEAT_EVENT, "fleet-activate-hotel", ["fleet:wd"])
    assert trigger.covers(beat)
    assert trigger.starts_after(beat.event) and trigger.expects(beat.event)


@pytest.mark.parametrize(
    "event", ["prefect.flow-run.Completed", "prefect.flow-run.Failed", "prefect.flow-run.Crashed"]
)
def test_a_final_state_closes_the_window(trigger, event) -> None:
    closing = _event(event, "fleet-batch", ["fleet:wd"])
    assert trigger.covers(closing) and trigger.expects(closing.event)
    assert not trigger.starts_after(closing.event)


@pytest.mark.parametrize(
    ("flow", "tags"),
    [
        ("activate-hotel", ["fleet:wd", "resort:wd-a"]),  # a device subflow: no heartbeats
        ("fleet-activate-hotel", ["fleet:other"]),  # another fleet's parent
        ("fleet-activate-hotel", []),  # a parent run started without the tag
    ],
)
def test_runs_that_are_not_this_fleets_tagged_parents_are_not_watched(trigger, flow, tags) -> None:
    assert not trigger.covers(_event(watchdog.START_EVENT, flow, tags))


def test_a_parent_run_started_by_the_client_carries_the_fleet_tag(inv) -> None:
    """`fleet.client` starts parent runs under the tag the automation matches."""
    from prefect.context import TagsContext

    from fleet.client.launch import start_parent

    seen: list[set[str]] = []

    async def parent(**_: object) -> str:
        seen.append(set(TagsContext.get().current_tags))
        return "ran"

    assert asyncio.run(start_parent(inv, parent)) == "ran"
    assert seen == [{"fleet:wd"}]
