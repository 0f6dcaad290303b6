"""Alerts end to end: a real server's automations notify a webhook receiver on loopback.

Two emulated resorts (`al-a`, `al-b`) with `fleet.alerts` pointing at a small HTTP server in this
process, a bearer token from the environment, fast heartbeats (1 s) and short bounds (offline
after 10 s, lock held after 3 s). Each incident is caused for real (the emulator's own faults, a
SIGKILL, an e-stop, a reservation) and must arrive as one notification when it starts and one
more when it clears.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.fleet_harness import Fleet, start_fleet
from tests.support.waiting import wait_for

pytestmark = pytest.mark.orchestration

A, B = "al-a", "al-b"
TOKEN_ENV = "AL_ALERT_TOKEN"
TOKEN = "t0ken-from-the-environment"
OFFLINE_AFTER = 10.0
#: the server evaluates proactive triggers every 5 s (Prefect's default granularity)
PROACTIVE_GRANULARITY = 5.0


@dataclass
class Message:
    """One notification as the receiver got it."""

    subject: str
    body: str
    fleet: str
    authorization: str
    at: float


class Receiver:
    """A webhook receiver on loopback that keeps every JSON POST."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = json.loads(self.rfile.read(length) or b"{}")
                with receiver._lock:
                    receiver.messages.append(
                        Message(
                            str(data.get("subject")),
                            str(data.get("body")),
                            str(data.get("fleet")),
                            self.headers.get("Authorization", ""),
                            time.monotonic(),
                        )
                    )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def about(self, resort: str, text: str) -> list[Message]:
        """Messages whose subject names `resort` and contains `text`."""
        with self._lock:
            return [m for m in self.messages if resort in m.subject and text in m.subject]

    def wait(self, resort: str, text: str, timeout: float = 60.0) -> Message:
        """The first message about `resort` containing `text`, waiting up to `timeout` s."""
        return wait_for(lambda: self.about(resort, text), timeout, what=f"{resort}: {text}")[0]

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def lab(
    prefect_server: Any, tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> Iterator[Fleet]:
    os.environ[TOKEN_ENV] = TOKEN
    fleet = start_fleet(
        tmp_path_factory.mktemp("alerts"),
        "al",
        count=2,
        fleet_options={
            "agent_heartbeat": 1,
            "health_interval": 30,
            "alerts": {
                "webhook_url": receiver.url,
                "token_env": TOKEN_ENV,
                "offline_after": OFFLINE_AFTER,
                "lock_held_after": 3,
            },
        },
    )
    try:
        yield fleet
    finally:
        # leave the shared server without this fleet's schedule and automations
        with contextlib.suppress(Exception):
            _provision_without_alerts(fleet, tmp_path_factory.mktemp("alerts-bare"))
        fleet.stop()
        os.environ.pop(TOKEN_ENV, None)


def _provision_without_alerts(lab: Fleet, tmp: Path) -> Any:
    """Provision the lab's inventory minus `alerts` and `health_interval`; returns the plan."""
    import yaml

    from fleet.core.inventory import load_inventory
    from fleet.core.provision import provision

    doc = yaml.safe_load(lab.inventory_path.read_text())
    del doc["fleet"]["alerts"], doc["fleet"]["health_interval"]
    bare = tmp / "inventory.yaml"
    bare.write_text(yaml.safe_dump(doc))
    # the parent deployments name the inventory's path: keep the original one
    return provision(load_inventory(bare).model_copy(update={"path": lab.inventory_path}))


@pytest.fixture
def client(lab: Fleet) -> Any:
    from fleet.client import FleetClient

    return FleetClient(lab.inventory_path, lock_timeout=60)


def _settled(receiver: Receiver, resort: str, text: str, cleared: Message) -> list[Message]:
    """Every message about `resort` and `text` once the clearing one is in: the incident's."""
    return [m for m in receiver.about(resort, text) if m.at <= cleared.at]


def test_unplugged_emulator_is_reported_once_and_again_when_back(
    lab: Fleet, receiver: Receiver
) -> None:
    lab.emulators[A].fault("unplug")
    raised = receiver.wait(A, "serial link lost")
    assert "cleared" not in raised.subject
    assert raised.fleet == "al" and raised.authorization == f"Bearer {TOKEN}"
    for part in ("Fleet: al", f"Resort: {A}", "What: serial link lost", "When: ", "Agent: "):
        assert part in raised.body, raised.body
    lab.emulators[A].fault("replug")
    cleared = receiver.wait(A, "serial link lost cleared")
    assert "cleared after" in cleared.body
    incident = _settled(receiver, A, "serial link lost", cleared)
    assert [m.subject.endswith("cleared") for m in incident] == [False, True], incident
    assert not receiver.about(B, "serial link lost")


def test_overload_is_reported_and_its_clearing_after_recover(
    lab: Fleet, receiver: Receiver, client: Any
) -> None:
    lab.emulators[B].fault("overload")
    raised = receiver.wait(B, "servo hardware error", timeout=60)
    assert "overload" in raised.body
    client.recover(B)
    cleared = receiver.wait(B, "servo hardware error cleared", timeout=60)
    incident = _settled(receiver, B, "servo hardware error", cleared)
    assert len(incident) == 2, incident


def _overview_row(inv: Any, resort: str) -> dict[str, Any]:
    """The resort's row in the latest version of the fleet's overview artifact ({} if none)."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    from resort_common import names

    with get_client(sync_client=True) as c:
        latest = c.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[names.overview_artifact_key(inv)])
            ),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    rows = json.loads(latest[0].data) if latest else []
    return next((row for row in rows if row["resort"] == resort), {})


@contextlib.contextmanager
def _overview_watcher(inv: Any) -> Iterator[None]:
    """What `fleet controller` runs beside its worker: the overview watcher thread."""
    import contextvars

    from fleet.core.overview import watch_overview

    stop = threading.Event()
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(watch_overview, inv, stop), daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def test_estop_is_reported_cleared_and_shown_in_the_overview(
    lab: Fleet, receiver: Receiver, client: Any
) -> None:
    inv = lab.inventory
    with _overview_watcher(inv):
        wait_for(lambda: _overview_row(inv, A).get("online") == "online", 30, what="overview")
        client.estop([A], reason="arm in the carousel")
        raised = receiver.wait(A, "e-stop engaged")
        assert "arm in the carousel" in raised.body
        wait_for(lambda: _overview_row(inv, A).get("e-stop") == "ENGAGED", 30, what="ENGAGED")
        assert _overview_row(inv, B).get("e-stop") == "-"
        client.estop_clear([A])
        cleared = receiver.wait(A, "e-stop engaged cleared")
        assert len(_settled(receiver, A, "e-stop engaged", cleared)) == 2
        wait_for(lambda: _overview_row(inv, A).get("e-stop") == "-", 30, what="e-stop cleared")


def test_lock_held_past_its_bound_is_reported_with_its_holder(
    lab: Fleet, receiver: Receiver, client: Any
) -> None:
    with client.reserve(B):
        raised = receiver.wait(B, "resort lock held too long", timeout=30)
    assert "held for more than 3 s by" in raised.body
    cleared = receiver.wait(B, "resort lock held too long cleared", timeout=30)
    assert "released after" in cleared.body


def _kill(lab: Fleet, name: str, sig: signal.Signals) -> None:
    proc = lab.agents[name]
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    proc.wait(60)


def test_killed_agent_is_reported_offline_and_back_online(lab: Fleet, receiver: Receiver) -> None:
    _kill(lab, B, signal.SIGKILL)
    offline = receiver.wait(B, "agent offline", timeout=OFFLINE_AFTER + 4 * PROACTIVE_GRANULARITY)
    assert "Last heartbeat: " in offline.body and "agent-al-b" in offline.body
    lab.restart_agent(B)
    back = receiver.wait(B, "agent offline cleared", timeout=30)
    assert "back online after" in back.body
    assert len(receiver.about(B, "agent offline")) == 2


def test_cleanly_stopped_agent_is_not_reported_offline(lab: Fleet, receiver: Receiver) -> None:
    before = len(receiver.about(A, "agent offline"))
    _kill(lab, A, signal.SIGTERM)
    # an absence can only be seen by waiting: past the bound and two evaluations of the server
    time.sleep(OFFLINE_AFTER + 2 * PROACTIVE_GRANULARITY)
    assert len(receiver.about(A, "agent offline")) == before
    lab.restart_agent(A)
    assert len(receiver.about(A, "agent offline")) == before


def _objects(inv: Any) -> tuple[list[str], bool, list[Any]]:
    """The fleet's alert automations, whether its webhook block exists, its health schedules."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    from fleet.core.alerts import is_alert_automation
    from resort_common import names

    with get_client(sync_client=True) as c:
        autos = sorted(a.name for a in c.read_automations() if is_alert_automation(inv, a.name))
        try:
            c.read_block_document_by_name(names.alert_block_name(inv), "custom-webhook")
            block = True
        except ObjectNotFound:
            block = False
        dep = c.read_deployment_by_name(names.parent_deployment_name("fleet-health", inv))
        return autos, block, c.read_deployment_schedules(dep.id)


def _scheduled_health_runs(inv: Any) -> list[Any]:
    """Runs the server's scheduler created from the fleet-health schedule."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    from resort_common import names

    with get_client(sync_client=True) as c:
        dep = c.read_deployment_by_name(names.parent_deployment_name("fleet-health", inv))
        return c.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
        )


def test_provisioning_keeps_and_removes_the_schedule_and_alerts(lab: Fleet, tmp_path: Path) -> None:
    from datetime import timedelta

    from fleet.core.provision import provision

    autos, block, schedules = _objects(lab.inventory)
    assert autos == sorted(
        f"fleet:al:alert:{k}"
        for k in (
            "hardware-error",
            "link-lost",
            "estop",
            "agent-offline",
            "agent-online",
            "lock-held",
        )
    )
    assert block
    assert [s.schedule.interval for s in schedules] == [timedelta(seconds=30)]
    wait_for(lambda: _scheduled_health_runs(lab.inventory), 60, what="scheduled fleet-health runs")
    assert TOKEN not in lab.inventory_path.read_text()
    again = provision(lab.inventory)
    assert again.count("create") == again.count("update") == again.count("delete") == 0

    try:
        plan = _provision_without_alerts(lab, tmp_path)
        assert plan.count("delete") == 6 + 1 + 1, plan.changes
        assert _objects(lab.inventory) == ([], False, [])
    finally:
        provision(lab.inventory)
    assert _objects(lab.inventory)[0] == autos


def test_missing_token_fails_provisioning_before_any_change(
    lab: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleet.core.errors import ProvisionError
    from fleet.core.provision import provision

    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(ProvisionError, match=f"fleet.alerts.token_env: .*{TOKEN_ENV} is not set"):
        provision(lab.inventory)
