"""The plate-resort worker type, flow loading, and the device session seen by device subflows."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from device_agent import DeviceError, EmergencyStopError, current_device
from device_agent.errors import MotionAbortedError, NotConnectedError
from device_agent.session import DeviceSession, use_session
from device_agent.worker import ResortWorker, load_flow
from tests.device_agent.driver_support import make_rig


def test_worker_type_matches_fleet_names_and_is_registered() -> None:
    from prefect.workers.base import BaseWorker

    from resort_common import names

    assert ResortWorker.type == names.WORKER_TYPE
    assert BaseWorker.get_worker_class_from_type(names.WORKER_TYPE) is ResortWorker
    template = ResortWorker.get_default_base_job_template()
    assert "move_timeout" in template["variables"]["properties"]


def test_load_flow_by_entrypoint_turns_result_persistence_off() -> None:
    from resort_common import names

    for flow_name, entrypoint in names.DEVICE_FLOWS.items():
        flow = load_flow(entrypoint)
        assert flow.name == flow_name
        assert flow.persist_result is False
    with pytest.raises(ValueError, match="not of the form"):
        load_flow("flows.device")
    with pytest.raises(ValueError, match="cannot import"):
        load_flow("flows.nowhere:activate_hotel")
    with pytest.raises(ValueError, match="does not name a Prefect flow"):
        load_flow("flows.device:publish_result")


def test_current_device_outside_an_agent_is_a_clear_error() -> None:
    with pytest.raises(DeviceError, match="only available inside a device agent"):
        current_device()


def _session() -> tuple[DeviceSession, Any]:
    rig = make_rig(instant=False, speed=90.0, acceleration=0.0)
    return DeviceSession(rig.driver, name="resort-t", serial_port="memory"), rig


def test_session_is_current_inside_use_session() -> None:
    session, _ = _session()
    with use_session(session):
        assert current_device() is session
    with pytest.raises(DeviceError):
        current_device()


def test_estop_latch_aborts_a_move_and_refuses_motion_until_cleared() -> None:
    session, rig = _session()
    errors: list[BaseException] = []

    def move() -> None:
        try:
            with session.motion(permit=None) as driver:
                driver.move_to_angle(180.0)  # 2 s at 90 deg/s
        except BaseException as exc:
            errors.append(exc)

    mover = threading.Thread(target=move)
    mover.start()
    time.sleep(0.3)
    assert session.moving
    assert session.latch_estop("test") is True
    mover.join(5)
    assert isinstance(errors[0], EmergencyStopError)
    assert any(w.address == 64 and w.value == 0 for w in rig.writes())  # torque off on the wire
    refused = pytest.raises(EmergencyStopError, match="estop-clear resort-t")
    with refused, session.motion(permit=None):
        pass
    assert session.clear_estop() is True
    with session.motion(permit=None) as driver:
        assert driver.go_home().hotel == "A"
    assert not session.moving


def test_cancel_and_link_loss_refuse_motion() -> None:
    session, _ = _session()
    session.cancel_requested.set()
    with pytest.raises(MotionAbortedError), session.motion(permit=None):
        pass
    session.cancel_requested.clear()
    session.mark_link_error(OSError("gone"))
    assert session.faulted
    with pytest.raises(NotConnectedError, match="keeps retrying"), session.device():
        pass


def test_session_note_sets_fields_without_publishing_and_update_publishes() -> None:
    rig = make_rig(instant=True)
    published: list[str | None] = []
    session = DeviceSession(rig.driver, name="resort-t", on_change=lambda: None)
    session._on_change = lambda: published.append(session.current_run)
    session.note(current_run="run-1")
    assert session.current_run == "run-1" and published == []
    session.update(active_hotel="B")
    assert published == ["run-1"]  # the noted field goes out with the next publication
    with pytest.raises(AttributeError, match="no status field"):
        session.note(nonsense=1)


@pytest.mark.orchestration
def test_the_device_thread_starts_before_its_first_run_and_warms_the_engine(
    prefect_server: Any,
) -> None:
    """An agent's first run must not pay for the thread, its client and the engine's imports."""
    import sys

    from device_agent.prefect_adapter import warm_engine_thread
    from device_agent.worker.device_thread import DeviceThread

    thread = DeviceThread(name="device-warm")
    thread.start()
    assert thread._thread is not None and thread._thread.is_alive()
    started = thread._thread
    thread.submit(warm_engine_thread).result(timeout=60)
    assert thread._thread is started  # the same thread runs every item
    assert "prefect.flow_engine" in sys.modules
    thread.stop()


def test_a_deployment_listed_at_start_up_is_not_read_again_by_the_first_run() -> None:
    import asyncio
    from types import SimpleNamespace
    from uuid import uuid4

    from device_agent.worker.job import ApiCache

    cache = ApiCache(ttl=60.0)
    listed = SimpleNamespace(id=uuid4(), flow_id=uuid4())
    cache.remember_deployment(listed)
    # no client at all: a read would fail
    assert asyncio.run(cache.deployment(None, listed.id)) is listed


def test_the_engines_policy_update_is_skipped_for_runs_without_retries() -> None:
    from types import SimpleNamespace
    from uuid import uuid4

    from device_agent.prefect_adapter import skip_run_policy_updates

    made: list[dict[str, Any]] = []
    client = SimpleNamespace(update_flow_run=lambda flow_run_id, **fields: made.append(fields))
    skip_run_policy_updates(client)
    run_id = uuid4()
    # what FlowRunEngine.start sends for a device flow (retries=0): no request
    answer = client.update_flow_run(
        flow_run_id=run_id, flow_version="v1", empirical_policy=SimpleNamespace(retries=0)
    )
    assert made == [] and answer.status_code == 204
    # a policy with retries, or any other field, is written as usual
    client.update_flow_run(flow_run_id=run_id, empirical_policy=SimpleNamespace(retries=2))
    client.update_flow_run(run_id, infrastructure_pid="plate-resort:w:1")
    assert [sorted(k for k, v in m.items() if v is not None) for m in made] == [
        ["empirical_policy"],
        ["infrastructure_pid"],
    ]


@pytest.mark.orchestration
def test_a_run_on_the_device_thread_reaches_the_flow_without_the_policy_write(
    prefect_server: Any,
) -> None:
    """The device thread's client skips the engine's pre-start PATCH (the run keeps the
    policy it was created with); the same run shape elsewhere gets it written."""
    from prefect import flow, get_client

    from device_agent.prefect_adapter import run_flow_here
    from device_agent.worker.device_thread import DeviceThread

    @flow(name="policy-probe", persist_result=False, retries=0, version="engine")
    def probe() -> int:
        return 1

    created = probe.with_options(version="created")  # the engine's PATCH would write "engine"
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(created)
        thread = DeviceThread(name="device-policy")
        state = thread.submit(lambda: run_flow_here(probe, run)).result(timeout=60)
        thread.stop()
        assert state.is_completed()
        assert client.read_flow_run(run.id).flow_version == "created"
        other = client.create_flow_run(created)
        assert run_flow_here(probe, other).is_completed()  # not an engine thread
        assert client.read_flow_run(other.id).flow_version == "engine"


def test_a_completed_run_is_not_read_again_after_the_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from uuid import uuid4

    from prefect.client import orchestration
    from prefect.states import Completed, Failed

    from device_agent.worker import run_states

    reads: list[str] = []

    class Client:
        def read_flow_run(self, flow_run_id: Any) -> Any:
            reads.append(str(flow_run_id))
            raise RuntimeError("no server here")

    monkeypatch.setattr(orchestration, "get_client", lambda **kw: Client())
    run_states.finalize_after_engine(uuid4(), False, None, reported=Completed())
    assert reads == []
    # cancelled while executing, or any other state: the server's word is read
    run_states.finalize_after_engine(uuid4(), True, None, reported=Completed())
    run_states.finalize_after_engine(uuid4(), False, None, reported=Failed())
    run_states.finalize_after_engine(uuid4(), False, None, reported=None)
    assert len(reads) == 3
