"""fleet.core.alerts: the `fleet.alerts` block's validation, defaults and the automations built."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from fleet.core.alerts import (
    ALERT_KINDS,
    automations,
    is_alert_automation,
    lock_held_after,
    offline_after,
)
from fleet.core.errors import InventoryError
from fleet.core.inventory import parse_inventory
from resort_common import names
from resort_common.events import cleared_event, raised_event

BASE = """\
fleet:
  name: lab
  work_pool: lab-resorts
{extra}defaults:
  hotels: [A, B, C, D]
resorts:
  - {{name: resort-a, host: pi-a, serial_port: /dev/ttyUSB0}}
  - {{name: resort-b, host: pi-b, serial_port: /dev/ttyUSB0}}
"""


def inv_with(extra: str):
    return parse_inventory(BASE.format(extra=extra), "lab.yaml")


def problems(extra: str) -> list[str]:
    with pytest.raises(InventoryError) as info:
        inv_with(extra)
    return str(info.value).splitlines()


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        (
            "  alerts: {}\n",
            "lab.yaml:4: fleet.alerts: needs exactly one of webhook_url, webhook_url_env, block",
        ),
        (
            "  alerts: {webhook_url: 'https://h/x', block: slack-webhook/lab}\n",
            "lab.yaml:4: fleet.alerts: needs exactly one of webhook_url, webhook_url_env, block "
            "(got webhook_url, block)",
        ),
        (
            "  alerts: {webhook_url: 'https://bot:secret@h/x'}\n",
            "lab.yaml:4: fleet.alerts: webhook_url must not carry a password: put the secret in "
            "an environment variable (token_env, or the whole URL in webhook_url_env)",
        ),
        (
            "  alerts: {block: slack-webhook/lab, token_env: TOKEN}\n",
            "lab.yaml:4: fleet.alerts: token_env goes with webhook_url or webhook_url_env, "
            "not block",
        ),
        (
            "  agent_heartbeat: 10\n  alerts: {webhook_url: 'https://h/x', offline_after: 15}\n",
            "lab.yaml:5: fleet.alerts.offline_after: must be at least 2 x fleet.agent_heartbeat "
            "(20 s; default 4 x, got 15)",
        ),
    ],
    ids=["none", "two", "password", "token-with-block", "offline-too-short"],
)
def test_bad_alert_settings_get_one_line_each(extra: str, line: str) -> None:
    assert problems(extra) == [line]


def test_unknown_alert_key_lists_the_allowed_ones() -> None:
    (line,) = problems("  alerts: {webhook_url: 'https://h/x', channel: lab}\n")
    assert line.startswith("lab.yaml:4: fleet.alerts.channel: unknown key (allowed: webhook_url,")


def test_health_interval_has_a_floor() -> None:
    (line,) = problems("  health_interval: 1\n")
    assert line.startswith("lab.yaml:4: fleet.health_interval: ")
    assert "10" in line


def test_defaults_follow_the_heartbeat() -> None:
    plain = inv_with("")
    assert plain.fleet.alerts is None and plain.fleet.health_interval is None
    assert lock_held_after(plain) is None
    inv = inv_with("  agent_heartbeat: 5\n  alerts: {webhook_url: 'https://h/x'}\n")
    assert offline_after(inv) == 20.0  # 4 heartbeats
    assert lock_held_after(inv) == 900.0
    fast = inv_with("  agent_heartbeat: 1\n  alerts: {webhook_url: 'https://h/x'}\n")
    assert offline_after(fast) == 10.0  # Prefect's shortest proactive window


def test_one_automation_per_kind_matching_only_this_fleets_resorts() -> None:
    inv = inv_with("  alerts: {webhook_url: 'https://h/x', offline_after: 45}\n")
    block = uuid4()
    built = {a.name: a for a in automations(inv, block)}
    kinds = [k for k in ALERT_KINDS] + ["agent-online"]
    assert set(built) == {names.alert_automation_name(inv, k) for k in kinds}
    resources = ["plate-resort.resort.resort-a", "plate-resort.resort.resort-b"]
    for automation in built.values():
        assert automation.trigger.match.model_dump()["prefect.resource.id"] == resources
        assert automation.actions[0].block_document_id == block
        assert is_alert_automation(inv, automation.name)
    estop = built["fleet:lab:alert:estop"].trigger
    assert estop.expect == {raised_event("estop"), cleared_event("estop")}
    assert estop.posture == "Reactive"
    offline = built["fleet:lab:alert:agent-offline"].trigger
    assert offline.posture == "Proactive" and offline.within == timedelta(seconds=45)
    assert "plate-resort.agent.stopped" in offline.expect
    assert not is_alert_automation(inv, "fleet:lab:parent-watchdog")
    assert not is_alert_automation(inv, "fleet:other:alert:estop")
