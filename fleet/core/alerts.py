"""Alerts: Prefect automations that tell people about the fleet's incidents, once each.

An incident is reported once when it starts and once more when it clears:

* `hardware-error`: a reading of the servo's Hardware Error Status is not zero (overload,
  overheating, ...); cleared by a reading without (`fleet recover` reboots the servo);
* `link-lost`: the agent loses the serial link; cleared when it reopens the port;
* `estop`: the resort's e-stop latch is set; cleared by `fleet estop-clear`;
* `agent-offline`: no agent heartbeat for `alerts.offline_after` s; cleared by the next one;
* `lock-held`: a resort lock is held past `alerts.lock_held_after` s; cleared by its release.

The agent reports the first three, and the end of the fourth, as edge events
(`raised_event(kind)` / `cleared_event(kind)`) computed from its own status and remembered in its
state directory, so an agent restart does not report an incident twice. The holder of a resort
lock reports the fifth (`fleet.core.locks`). The start of `agent-offline` is the server's: a
proactive automation fires when an agent sends neither a heartbeat (`HEARTBEAT_EVENT`, every
`fleet.agent_heartbeat` s) nor its clean-stop event (`STOPPED_EVENT`) within `offline_after`.

`fleet provision` creates one automation per kind (plus `agent-online` for the end of an
offline incident) named `resort_common.names.alert_automation_name`, matching the fleet's own
resorts (`resort_common.names.resource_id`), each sending through one notification block: the
webhook block it creates for `alerts.webhook_url` / `webhook_url_env`
(`resort_common.names.alert_block_name`; a bearer token from `token_env`), or the existing block
named by `alerts.block`. Credentials never live in the inventory: a URL carrying a password is
refused, secrets come from the environment.

The event names are the fleet's (`resort_common.events`), the same the agent emits.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from fleet.core.inventory.fleet_block import (
    DEFAULT_LOCK_HELD_AFTER,
    MIN_OFFLINE_AFTER,
    OFFLINE_BEATS,
)
from resort_common import names
from resort_common.events import (
    HEARTBEAT_EVENT,
    STOPPED_EVENT,
    cleared_event,
    raised_event,
)

if TYPE_CHECKING:
    from prefect.events.schemas.automations import AutomationCore

    from fleet.core.inventory import Inventory

__all__ = [
    "ALERT_KINDS",
    "automations",
    "lock_held_after",
    "offline_after",
]

#: Every kind of incident, in the order the automations are listed.
ALERT_KINDS: tuple[str, ...] = (
    "hardware-error",
    "link-lost",
    "estop",
    "agent-offline",
    "lock-held",
)
#: What each kind means, for the notification's first line.
TITLES: dict[str, str] = {
    "hardware-error": "servo hardware error",
    "link-lost": "serial link lost",
    "estop": "e-stop engaged",
    "agent-offline": "agent offline",
    "lock-held": "resort lock held too long",
}


def offline_after(inv: Inventory) -> float:
    """Seconds of agent silence reported as offline (`alerts.offline_after` or its default)."""
    alerts = inv.fleet.alerts
    if alerts is not None and alerts.offline_after is not None:
        return float(alerts.offline_after)
    return max(MIN_OFFLINE_AFTER, OFFLINE_BEATS * inv.fleet.agent_heartbeat)


def lock_held_after(inv: Inventory) -> float | None:
    """Seconds a resort lock may be held before it is reported; None without `alerts`."""
    alerts = inv.fleet.alerts
    if alerts is None:
        return None
    return float(alerts.lock_held_after or DEFAULT_LOCK_HELD_AFTER)


# --------------------------------------------------------------------------- automations

_DETAILS = (
    "{% if event.payload.worker %}\nAgent: {{ event.payload.worker }}"
    "{% if event.payload.host %} on {{ event.payload.host }}{% endif %}{% endif %}"
    "{% if event.payload.run %}\nRun: {{ event.payload.run }}{% endif %}"
)


def _body(fleet: str, what: str, when: str = "When") -> str:
    return (
        f"Fleet: {fleet}\nResort: {{{{ event.resource.name }}}}\nWhat: {what}\n"
        f"{when}: {{{{ event.occurred }}}}{_DETAILS}"
    )


def _notify(block_document_id: UUID, subject: str, body: str) -> Any:
    from prefect.events.actions import SendNotification

    return SendNotification(block_document_id=block_document_id, subject=subject, body=body)


def automations(inv: Inventory, block_document_id: UUID) -> list[AutomationCore]:
    """The fleet's alert automations, as `fleet provision` creates them (see the module doc)."""
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    fleet = inv.fleet.name
    resources = sorted(names.resource_id(r) for r in inv.resorts)
    match = {"prefect.resource.id": resources}
    out: list[AutomationCore] = []
    for kind in ALERT_KINDS:
        if kind == "agent-offline":
            continue
        title = TITLES[kind]
        subject = (
            f"[fleet {fleet}] {{{{ event.resource.name }}}}: {title}"
            "{% if event.event.endswith('.cleared') %} cleared{% endif %}"
        )
        out.append(
            AutomationCore(
                name=names.alert_automation_name(inv, kind),
                description=f"Notifies when a resort of fleet {fleet} reports '{title}' and "
                "when it clears (managed by `fleet provision`).",
                enabled=True,
                trigger=EventTrigger(
                    match=match,
                    expect={raised_event(kind), cleared_event(kind)},
                    for_each={"prefect.resource.id"},
                    posture=Posture.Reactive,
                    threshold=1,
                    within=timedelta(0),
                ),
                actions=[
                    _notify(block_document_id, subject, _body(fleet, "{{ event.payload.message }}"))
                ],
            )
        )
    window = offline_after(inv)
    out.append(
        AutomationCore(
            name=names.alert_automation_name(inv, "agent-offline"),
            description=f"Notifies when an agent of fleet {fleet} sends no heartbeat for "
            f"{window:g} s (managed by `fleet provision`).",
            enabled=True,
            trigger=EventTrigger(
                match=match,
                after={HEARTBEAT_EVENT},
                expect={HEARTBEAT_EVENT, STOPPED_EVENT},
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(seconds=window),
            ),
            actions=[
                _notify(
                    block_document_id,
                    f"[fleet {fleet}] {{{{ event.resource.name }}}}: agent offline",
                    _body(
                        fleet,
                        f"agent offline: no heartbeat for {window:g} s",
                        when="Last heartbeat",
                    ),
                )
            ],
        )
    )
    out.append(
        AutomationCore(
            name=names.alert_automation_name(inv, "agent-online"),
            description=f"Notifies when an agent of fleet {fleet} reported offline is back "
            "(managed by `fleet provision`).",
            enabled=True,
            trigger=EventTrigger(
                match=match,
                expect={cleared_event("agent-offline")},
                for_each={"prefect.resource.id"},
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=[
                _notify(
                    block_document_id,
                    f"[fleet {fleet}] {{{{ event.resource.name }}}}: agent offline cleared",
                    _body(fleet, "{{ event.payload.message }}"),
                )
            ],
        )
    )
    return out


def is_alert_automation(inv: Inventory, name: str) -> bool:
    """Whether an automation named `name` is one of this fleet's alert automations."""
    prefix = names.alert_automation_name(inv, "")
    return name.startswith(prefix) and re.fullmatch(r"[a-z-]+", name[len(prefix) :]) is not None
