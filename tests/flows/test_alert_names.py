"""flows.agent_settings: the agent's heartbeat and offline bound come from the fleet's inventory."""

from __future__ import annotations


def test_agent_settings_carry_the_fleets_heartbeat_and_bound(tmp_path) -> None:
    from fleet.core.inventory import parse_inventory
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
