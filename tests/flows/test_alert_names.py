"""The agent and the control plane name incidents and heartbeats alike (they never import each
other; flows sees both)."""

from __future__ import annotations

import device_agent.alerts as agent_side
import fleet.alerts as fleet_side


def test_event_names_and_kinds_agree() -> None:
    assert agent_side.HEARTBEAT_EVENT == fleet_side.HEARTBEAT_EVENT
    assert agent_side.STOPPED_EVENT == fleet_side.STOPPED_EVENT
    assert agent_side.AGENT_KINDS == fleet_side.AGENT_KINDS
    for kind in fleet_side.ALERT_KINDS:
        assert agent_side.raised_event(kind) == fleet_side.raised_event(kind)
        assert agent_side.cleared_event(kind) == fleet_side.cleared_event(kind)


def test_agent_settings_carry_the_fleets_heartbeat_and_bound(tmp_path) -> None:
    from fleet.inventory import parse_inventory
    from flows.agent_settings import agent_settings_for

    text = """\
fleet: {name: lab, work_pool: lab-resorts, agent_heartbeat: 3,
        alerts: {webhook_url: 'https://h/x', offline_after: 30}}
defaults: {hotels: [A, B]}
resorts: [{name: r1, host: pi, serial_port: /dev/ttyUSB0}]
"""
    settings = agent_settings_for(parse_inventory(text, "lab.yaml"), "r1", state_dir=tmp_path)
    assert (settings.heartbeat, settings.offline_after) == (3.0, 30.0)
    bare = parse_inventory(
        text.replace(
            "agent_heartbeat: 3,\n        alerts: {webhook_url: 'https://h/x', offline_after: 30}",
            "",
        ),
        "lab.yaml",
    )
    assert bare.fleet.alerts is None
    assert agent_settings_for(bare, "r1", state_dir=tmp_path).offline_after is None
