"""The inventory plugin and the lint gate: `ansible-inventory` on the examples and a broken file."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from rollout_helpers import ANSIBLE_DIR, REPO, VENV_BIN, ansible_env, run

pytestmark = pytest.mark.ansible


def inventory_list(source: Path) -> tuple[int, dict, str]:
    """`ansible-inventory -i source --list`: return code, parsed JSON (or {}), stderr."""
    result = run(
        [str(VENV_BIN / "ansible-inventory"), "-i", str(source), "--list"],
        env=ansible_env(),
        cwd=ANSIBLE_DIR,
    )
    data = json.loads(result.stdout) if result.returncode == 0 else {}
    return result.returncode, data, result.stderr


def test_ansible_lint_production_profile_passes() -> None:
    result = run(
        [str(VENV_BIN / "ansible-lint"), "--offline", "--profile", "production"],
        env=ansible_env(),
        cwd=ANSIBLE_DIR,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failure(s), 0 warning(s)" in result.stdout + result.stderr


def test_lab_example_lists_one_host_per_pi_with_its_resorts() -> None:
    rc, data, err = inventory_list(ANSIBLE_DIR / "inventory" / "lab.yml")
    assert rc == 0, err
    hostvars = data["_meta"]["hostvars"]
    # resort-4 is inactive: its Pi gets no agent.
    assert sorted(data["plate_resort_pis"]["hosts"]) == [
        "resort-pi-1.lab.lan",
        "resort-pi-2.lab.lan",
        "resort-pi-3.lab.lan",
    ]
    pi3 = hostvars["resort-pi-3.lab.lan"]
    assert pi3["ansible_host"] == "resort-pi-3.lab.lan"
    assert pi3["ansible_user"] == "pi"
    assert pi3["plate_resort_work_pool"] == "lab-resorts"
    assert pi3["plate_resort_api_url"] == "http://lab-prefect.lan:4200/api"
    assert pi3["plate_resort_fleet_inventory"] == str(REPO / "inventory" / "lab.example.yaml")
    [resort] = pi3["plate_resort_resorts"]
    assert resort["name"] == "resort-3"
    assert resort["work_queue"] == "resort-3"
    assert resort["worker_name"] == "agent-resort-3"
    assert resort["baudrate"] == 1000000
    assert resort["hotels"] == ["A", "B", "C", "D", "E", "F"]
    assert resort["emulate"] is False
    assert data["resort_resort_3"]["hosts"] == ["resort-pi-3.lab.lan"]
    assert sorted(data["label_reader_side"]["hosts"]) == ["resort-pi-3.lab.lan"]


def test_lab_example_lists_the_control_hosts_of_its_server_block() -> None:
    rc, data, err = inventory_list(ANSIBLE_DIR / "inventory" / "lab.yml")
    assert rc == 0, err
    assert data["fleet_servers"]["hosts"] == ["lab-prefect-1.lan", "lab-prefect-2.lan"]
    assert "fleet_servers" in data["fleet_lab"]["children"]
    hostvars = data["_meta"]["hostvars"]
    first, second = hostvars["lab-prefect-1.lan"], hostvars["lab-prefect-2.lan"]
    assert first["plate_resort_server_host"] == {
        "name": "lab-prefect-1.lan", "address": "lab-prefect-1.lan", "replicas": 2, "first": True,
    }  # fmt: skip
    assert second["ansible_host"] == "10.20.0.12"
    assert second["plate_resort_server_host"]["first"] is False
    server = second["plate_resort_server"]
    assert server["database_url"] == "postgresql+asyncpg://prefect@lab-db.lan:5432/prefect"
    assert server["database_password_var"] == "vault_fleet_db_password"
    assert server["redis_password_var"] == "vault_fleet_redis_password"
    # The exact versions the package pins, for the control hosts' venv.
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"prefect=={second["plate_resort_prefect_version"]}"' in pyproject
    assert f'"prefect-redis=={second["plate_resort_prefect_redis_version"]}"' in pyproject
    # No credentials in the inventory: the URLs carry none, the vault holds them.
    assert all(urlsplit(server[k]).password is None for k in ("database_url", "redis_url"))


def test_demo_groups_the_resorts_of_one_host() -> None:
    rc, data, err = inventory_list(ANSIBLE_DIR / "inventory" / "demo.yml")
    assert rc == 0, err
    assert data["plate_resort_pis"]["hosts"] == ["127.0.0.1"]
    host = data["_meta"]["hostvars"]["127.0.0.1"]
    assert host["ansible_connection"] == "local"
    assert [r["name"] for r in host["plate_resort_resorts"]] == ["resort-a", "resort-b", "resort-c"]
    assert all(r["emulate"] for r in host["plate_resort_resorts"])
    assert host["plate_resort_fleet_name"] == "demo"
    # No server: block: the group exists, empty (site.yml's server play matches no host).
    assert "hosts" not in data.get("fleet_servers", {})


def test_broken_fleet_inventory_fails_with_the_loaders_message(tmp_path: Path) -> None:
    broken = (REPO / "inventory" / "demo.yaml").read_text().replace("motor_id: 1", "motor_id: 999")
    (tmp_path / "fleet.yaml").write_text(broken)
    source = tmp_path / "fleet.yml"
    source.write_text("plugin: plate_resort_fleet\nfleet_inventory: fleet.yaml\n")
    rc, _, err = inventory_list(source)
    assert rc != 0
    assert "fleet.yaml:" in err
    assert "motor_id" in err
    assert "252" in err


def test_missing_fleet_inventory_fails(tmp_path: Path) -> None:
    source = tmp_path / "fleet.yml"
    source.write_text("plugin: plate_resort_fleet\nfleet_inventory: nowhere.yaml\n")
    rc, _, err = inventory_list(source)
    assert rc != 0
    assert "nowhere.yaml" in err
