"""`fleet provision`, `fleet drain`, `fleet resume` against a real Prefect server.

Every test uses its own fleet, pool and resort names: the session server is shared and the lock
names (`resort:<name>`) are global.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleet.cli import main
from fleet.core.errors import DeviceBusyError, ProvisionError
from fleet.core.inventory import load_inventory
from fleet.core.provision import drain, provision, resume
from resort_common import names
from tests.support.inventories import write_inventory

pytestmark = pytest.mark.orchestration


@pytest.fixture
def client(prefect_server):
    from prefect import get_client

    with get_client(sync_client=True) as c:
        yield c


def _gcl(client, name):
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        return None


def _deployment(client, full_name):
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_deployment_by_name(full_name)
    except ObjectNotFound:
        return None


def test_provision_creates_everything_then_changes_nothing(tmp_path: Path, client, capsys):
    from prefect.exceptions import ObjectNotFound

    path = write_inventory(
        tmp_path / "inv.yaml",
        "pv1",
        ["pv1-a", "pv1-b", {"name": "pv1-c", "active": False}],
        max_concurrent_moves=2,
    )
    inv = load_inventory(path)

    dry = provision(inv, dry_run=True)
    # Each fleet has its own parent deployments, so a fresh fleet creates everything.
    assert dry.dry_run
    assert {c.action for c in dry.changes} == {"create"}
    with pytest.raises(ObjectNotFound):
        client.read_work_pool("pv1-resorts")
    assert _gcl(client, "resort:pv1-a") is None

    plan = provision(inv)
    assert plan.count("create") == dry.count("create")
    kinds = {(c.kind, c.name) for c in plan.changes}
    n_resorts = 3
    expected = 2 + n_resorts + (n_resorts + 1) + n_resorts * len(names.DEVICE_FLOWS)
    assert len(kinds) == expected + len(names.PARENT_FLOWS) + 1  # + the parent watchdog

    pool = client.read_work_pool("pv1-resorts")
    assert pool.type == names.WORKER_TYPE
    control = client.read_work_pool(names.control_pool_name(inv))
    assert control.type == "process"
    for resort in inv.resorts:
        queue = client.read_work_queue_by_name(
            names.work_queue_name(resort), work_pool_name="pv1-resorts"
        )
        assert queue.concurrency_limit == 1
        assert queue.is_paused is (not resort.active)
        lock = _gcl(client, names.lock_name(resort))
        assert lock is not None and lock.limit == 1 and lock.active
        for flow_name, entrypoint in names.DEVICE_FLOWS.items():
            dep = _deployment(client, names.device_deployment_name(flow_name, resort))
            assert dep is not None
            assert (dep.work_pool_name, dep.work_queue_name) == ("pv1-resorts", resort.name)
            assert dep.entrypoint == entrypoint and dep.enforce_parameter_schema
    assert _gcl(client, names.fleet_limit_name(inv)).limit == 2
    for flow_name, entrypoint in names.PARENT_FLOWS.items():
        dep = _deployment(client, names.parent_deployment_name(flow_name, inv))
        assert dep.work_pool_name == names.control_pool_name(inv)
        assert dep.entrypoint == entrypoint

    (watchdog,) = client.read_automations_by_name(names.parent_watchdog_name(inv))
    assert watchdog.enabled and watchdog.trigger.within.total_seconds() == 120.0

    again = provision(inv)
    assert not again.changed, again.format(show_unchanged=False)
    assert again.count("unchanged") == len(plan.changes)

    assert main(["provision", "-i", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"] == {"create": 0, "update": 0, "unchanged": len(plan.changes), "delete": 0}


def test_provision_repairs_drift_and_follows_the_inventory(tmp_path: Path, client, capsys):
    path = write_inventory(tmp_path / "inv.yaml", "pv2", ["pv2-a", {"name": "pv2-b"}])
    inv = load_inventory(path)
    provision(inv)
    queue = client.read_work_queue_by_name("pv2-a", work_pool_name="pv2-resorts")
    client.update_work_queue(id=queue.id, concurrency_limit=5)
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    client.update_global_concurrency_limit("resort:pv2-a", GlobalConcurrencyLimitUpdate(limit=3))

    # pv2-b goes out of service: its queue is paused; fleet-wide limit appears.
    write_inventory(
        path, "pv2", ["pv2-a", {"name": "pv2-b", "active": False}], max_concurrent_moves=1
    )
    inv = load_inventory(path)
    assert main(["provision", "-i", str(path), "--dry-run", "--changes-only"]) == 0
    out = capsys.readouterr().out
    assert "dry run, nothing changed: 1 to create, 3 to update" in out
    assert "concurrency_limit: 5 -> 1" in out and "is_paused: False -> True" in out
    assert (
        client.read_work_queue_by_name("pv2-a", work_pool_name="pv2-resorts").concurrency_limit == 5
    )

    plan = provision(inv)
    assert {(c.action, c.name) for c in plan.changes if c.action != "unchanged"} == {
        ("update", "pv2-resorts/pv2-a"),
        ("update", "pv2-resorts/pv2-b"),
        ("update", "resort:pv2-a"),
        ("create", "fleet:pv2:moves"),
    }
    assert client.read_work_queue_by_name("pv2-b", work_pool_name="pv2-resorts").is_paused
    assert _gcl(client, "resort:pv2-a").limit == 1
    assert not provision(inv).changed


def test_provision_keeps_the_parent_watchdog_in_step_with_the_inventory(tmp_path: Path, client):
    """The watchdog follows `fleet.parent_heartbeat`, is re-enabled when paused, is one copy, and
    watches only its own fleet's parent runs."""
    from fleet.core import watchdog

    path = write_inventory(tmp_path / "inv.yaml", "pvw", ["pvw-a"])
    inv = load_inventory(path)
    name = names.parent_watchdog_name(inv)
    provision(inv)
    (first,) = client.read_automations_by_name(name)
    # its fleet's parent runs: a parent flow, tagged with the fleet (a device subflow is not)
    related = [spec.model_dump() for spec in first.trigger.match_related]
    assert {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.fleet:pvw"} in (
        related
    )
    assert {
        "prefect.resource.role": "flow",
        "prefect.resource.name": sorted(names.PARENT_FLOWS),
    } in related
    # watched from the run turning Running, until the next heartbeat or a final state
    assert first.trigger.after == {watchdog.START_EVENT, watchdog.HEARTBEAT_EVENT}
    assert first.trigger.expect == {watchdog.HEARTBEAT_EVENT, *watchdog.FINAL_EVENTS}

    client.pause_automation(first.id)
    client.create_automation(watchdog.automation(inv))  # a stray copy (e.g. a racing provision)
    write_inventory(path, "pvw", ["pvw-a"], parent_heartbeat=10)
    inv = load_inventory(path)
    plan = provision(inv)
    changed = [(c.kind, c.action) for c in plan.changes if c.action != "unchanged"]
    assert changed == [("automation", "update"), ("automation", "delete")]
    (kept,) = client.read_automations_by_name(name)
    assert kept.enabled and kept.trigger.within.total_seconds() == 40.0
    assert not provision(inv).changed


def test_prune_removes_only_what_the_inventory_dropped(tmp_path: Path, client, capsys):
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    path = write_inventory(tmp_path / "inv.yaml", "pv3", ["pv3-a", "pv3-b"], max_concurrent_moves=2)
    provision(load_inventory(path))
    # Foreign objects: another team's lock and a queue in another pool.
    client.create_global_concurrency_limit(
        GlobalConcurrencyLimitCreate(name="resort:pv3-foreign", limit=1)
    )
    write_inventory(path, "pv3", ["pv3-a"])  # pv3-b and the move limit are gone
    inv = load_inventory(path)

    kept = provision(inv)
    assert kept.count("delete") == 0
    assert _deployment(client, "go-home/pv3-b") is not None

    dry = provision(inv, dry_run=True, prune=True)
    deleted = {c.name for c in dry.changes if c.action == "delete"}
    assert deleted == {
        "pv3-resorts/pv3-b",
        "resort:pv3-b",
        "fleet:pv3:moves",
        *(names.device_deployment_name(f, "pv3-b") for f in names.DEVICE_FLOWS),
    }
    assert _gcl(client, "resort:pv3-b") is not None

    assert main(["provision", "-i", str(path), "--prune", "--changes-only"]) == 0
    assert f"{len(deleted)} deleted" in capsys.readouterr().out
    assert _gcl(client, "resort:pv3-b") is None
    assert _gcl(client, "fleet:pv3:moves") is None
    assert _deployment(client, "go-home/pv3-b") is None
    assert _deployment(client, "go-home/pv3-a") is not None
    assert _gcl(client, "resort:pv3-foreign") is not None
    queues = {q.name for q in client.read_work_queues(work_pool_name="pv3-resorts")}
    assert queues == {"default", "pv3-a"}
    assert not provision(inv, prune=True).changed


def test_bad_inventory_exits_2_and_changes_nothing(tmp_path: Path, client, capsys):
    from prefect.exceptions import ObjectNotFound

    path = write_inventory(tmp_path / "inv.yaml", "pv4", [{"name": "pv4-a", "speed": -5}])
    assert main(["provision", "-i", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "speed" in err[0]
    with pytest.raises(ObjectNotFound):
        client.read_work_pool("pv4-resorts")
    assert main(["provision"]) == 2
    assert "--inventory" in capsys.readouterr().err


def test_pool_of_another_type_is_refused(tmp_path: Path, client):
    from prefect.client.schemas.actions import WorkPoolCreate

    client.create_work_pool(WorkPoolCreate(name="pv5-resorts", type="process"))
    inv = load_inventory(write_inventory(tmp_path / "inv.yaml", "pv5", ["pv5-a"]))
    with pytest.raises(ProvisionError, match="type 'process'"):
        provision(inv)


def test_drain_waits_for_active_runs_and_resume_reopens(tmp_path: Path, client, capsys):
    from prefect.states import Completed, Running

    path = write_inventory(tmp_path / "inv.yaml", "pv6", ["pv6-a", "pv6-b"])
    inv = load_inventory(path)
    provision(inv)
    dep = client.read_deployment_by_name("go-home/pv6-a")
    running = client.create_flow_run_from_deployment(dep.id)
    client.set_flow_run_state(running.id, Running(), force=True)
    waiting = client.create_flow_run_from_deployment(dep.id)  # stays Scheduled

    with pytest.raises(DeviceBusyError, match="still active"):
        drain(inv, "pv6-a", timeout=0.5, poll=0.1)
    queue = client.read_work_queue_by_name("pv6-a", work_pool_name="pv6-resorts")
    assert queue.is_paused
    assert main(["drain", "pv6-a", "-i", str(path), "--timeout", "0.2"]) == 4
    assert capsys.readouterr().err.count("\n") == 1

    client.set_flow_run_state(running.id, Completed(), force=True)
    result = drain(inv, "pv6-a", timeout=30)
    assert result.paused and result.active_runs == 0 and result.scheduled_runs == 1
    # A drained queue stays paused across provisioning; the other resort is untouched.
    assert not provision(inv).changed
    assert client.read_work_queue_by_name("pv6-a", work_pool_name="pv6-resorts").is_paused
    assert not client.read_work_queue_by_name("pv6-b", work_pool_name="pv6-resorts").is_paused

    assert main(["resume", "pv6-a", "-i", str(path)]) == 0
    assert "1 scheduled run(s) waiting" in capsys.readouterr().out
    assert not client.read_work_queue_by_name("pv6-a", work_pool_name="pv6-resorts").is_paused
    assert client.read_flow_run(waiting.id).state.is_scheduled()
    assert not provision(inv).changed

    assert main(["drain", "nope", "-i", str(path)]) == 1
    assert "unknown resort 'nope'" in capsys.readouterr().err


def test_resume_refuses_an_inactive_resort(tmp_path: Path, client):
    inv = load_inventory(
        write_inventory(tmp_path / "inv.yaml", "pv7", [{"name": "pv7-a", "active": False}])
    )
    provision(inv)
    with pytest.raises(ProvisionError, match="inactive"):
        resume(inv, "pv7-a")
    assert client.read_work_queue_by_name("pv7-a", work_pool_name="pv7-resorts").is_paused


def test_provision_reads_every_deployment_when_they_fill_many_pages(
    tmp_path: Path, client, monkeypatch: pytest.MonkeyPatch
):
    """Deployment names repeat across fleets (`fleet-batch/<fleet>`, `go-home/<resort>`): paging
    must not skip one (on PostgreSQL, ties in a by-name order come back in any order)."""
    from fleet.core.provision import deployments

    monkeypatch.setattr(deployments, "PAGE", 7)
    paths = [
        write_inventory(tmp_path / f"pg{n}.yaml", f"pg{n}", [f"pg{n}-a", f"pg{n}-b"])
        for n in range(3)
    ]
    fleets = [load_inventory(path) for path in paths]
    for inv in fleets:
        provision(inv)
    for inv in fleets:
        again = [(c.kind, c.name, c.action) for c in provision(inv).changes]
        assert [c for c in again if c[2] != "unchanged"] == []
