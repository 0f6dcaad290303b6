"""flows.agent_settings: every resort of the example inventories becomes valid AgentSettings."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_agent.errors import ConfigurationError
from device_agent.settings import AgentSettings
from fleet.core.errors import DeviceSelectionError, InventoryError
from fleet.core.inventory import load_inventory
from flows.agent_settings import (
    AGENT_STATE_ROOT,
    agent_settings_for,
    resolve_agent_settings,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = [REPO / "inventory" / "demo.yaml", REPO / "inventory" / "lab.example.yaml"]
CASES = [(path, r.name) for path in EXAMPLES for r in load_inventory(path).resorts]


@pytest.mark.parametrize(("path", "name"), CASES, ids=[f"{p.stem}-{n}" for p, n in CASES])
def test_every_example_resort_converts(path: Path, name: str) -> None:
    inv = load_inventory(path)
    resort = inv.resort(name)
    settings = resolve_agent_settings(str(path), name)
    assert isinstance(settings, AgentSettings)
    assert settings == agent_settings_for(inv, resort)
    device = settings.device
    assert device.name == name
    assert device.hotels == resort.hotels
    assert (device.speed, device.acceleration) == (resort.speed, resort.acceleration)
    assert device.serial_port == resort.serial_port
    assert device.rotation_direction == resort.rotation_direction
    assert settings.work_pool == inv.fleet.work_pool
    assert settings.work_queue == name
    assert settings.worker_name == f"agent-{name}"
    assert settings.estop_variable == f"fleet_estop__{name.replace('-', '_')}"
    assert settings.resource_id == f"plate-resort.resort.{name}"
    assert settings.api_url == inv.fleet.api_url
    if resort.emulate:
        assert settings.emulator is not None
        assert settings.state_dir == REPO / ".fleet-state" / inv.fleet.name / name
        assert Path(device.serial_port).parent == settings.state_dir.parent
    else:
        assert settings.emulator is None
        assert settings.state_dir == AGENT_STATE_ROOT / name


def test_state_dir_override() -> None:
    inv = load_inventory(EXAMPLES[0])
    settings = agent_settings_for(inv, "resort-a", state_dir="/tmp/agent-a")
    assert settings.state_dir == Path("/tmp/agent-a")


def test_unknown_device_is_a_selection_error_the_device_cli_understands() -> None:
    with pytest.raises(DeviceSelectionError, match="known: resort-a, resort-b, resort-c") as info:
        resolve_agent_settings(str(EXAMPLES[0]), "resort-z")
    assert isinstance(info.value, ConfigurationError)


def test_invalid_inventory_is_an_inventory_error_the_device_cli_understands(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("fleet: {}\n")
    with pytest.raises(InventoryError) as info:
        resolve_agent_settings(str(path), "resort-a")
    assert isinstance(info.value, ConfigurationError)
    assert f"{path}:1: fleet.name: required key missing" in info.value.problems


def test_the_agent_finds_the_local_server_as_fleet_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleet.core.server import STATE_FILE, ServerInfo, server_dir

    demo = Path(__file__).resolve().parents[2] / "inventory" / "demo.yaml"
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "state"))
    assert resolve_agent_settings(demo, "resort-a").api_url is None  # nothing recorded yet
    server_dir().mkdir(parents=True)
    ServerInfo(
        pid=1,
        create_time=0.0,
        api_url="http://127.0.0.1:4999/api",
        ui_url=None,
        port=4999,
        home=str(tmp_path),
        log_path=str(tmp_path / "server.log"),
        database="sqlite",
        auth_file=None,
        started_at=0.0,
    ).save(server_dir() / STATE_FILE)
    assert resolve_agent_settings(demo, "resort-a").api_url == "http://127.0.0.1:4999/api"
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere:4200/api")  # the agent's own wins
    assert resolve_agent_settings(demo, "resort-a").api_url is None
