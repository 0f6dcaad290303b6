"""Device subflows: what a resort's agent executes in-process for each Prefect flow run.

Each flow reaches the open device through `device_agent.current_device()` (so it only runs inside
`device-agent run`, on its resort's work queue). Motion flows (`activate-hotel`, `go-home`,
`move-to-angle`) take the session's motion lock and are refused at once while the resort is
e-stopped. Every flow returns a plain dict and also publishes it as a table artifact on its run
(`flows.results.read_device_result(flow_run_id)` reads it back). Names:
`resort_common.names.DEVICE_FLOWS`.

The agent enforces the resort lock: motion and maintenance flows
(`resort_common.names.LEASED_FLOWS`) take
a `lease` parameter, the lease id of the resort lock their parent holds. Right before the motor's
first write the agent checks that the lease is live and is the resort's recorded holder
(`fleet.core.locks.verify_lease_sync`); otherwise the run fails with `LeaseError` and the motor
sees no
write. A bare `prefect deployment run activate-hotel/<resort>` has no lease and is refused.
E-stop and the read-only flows never need one.
"""

from __future__ import annotations

import datetime
import time
import uuid
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run as runtime_flow_run
from prefect.variables import Variable

from device_agent import current_device
from device_agent.session import DeviceSession, Permit
from fleet.core import locks
from resort_common import names

__all__ = [
    "FLOW_OPTIONS",
    "activate_hotel",
    "after_move",
    "artifact_key",
    "emergency_stop",
    "go_home",
    "move_to_angle",
    "publish_result",
    "reboot_resort",
    "request_health",
    "request_position",
    "set_speed",
]

#: options of every device flow: no retries (a move is never repeated), no persisted results
FLOW_OPTIONS: dict[str, Any] = {"persist_result": False, "retries": 0, "log_prints": False}


def artifact_key(resort: str, action: str) -> str:
    """The key of the result artifact of `action` on `resort` (`resort-a-activate-hotel`)."""
    raw = f"{resort}-{action}".lower()
    return "".join(c if c.isalnum() or c == "-" else "-" for c in raw)


def _begin() -> tuple[DeviceSession, float]:
    """The agent's device and the wall-clock time the flow body started (epoch seconds)."""
    return current_device(), time.time()


def _holds_lock(session: DeviceSession, lease: str | None) -> Permit:
    """The run's permit: its `lease` must be live and the resort lock's holder."""

    def check() -> None:
        from prefect.client.orchestration import get_client

        locks.verify_lease_sync(get_client(sync_client=True), session.name, lease)

    return check


def _write_latch(session: DeviceSession, reason: str, command_id: str, at: str) -> None:
    """Set the resort's e-stop latch variable to "stopped" by this run's latch command."""
    latch = {
        "estopped": True,
        "reason": reason,
        "by": f"emergency-stop flow run {runtime_flow_run.id}",
        "at": at,
        "command_id": command_id,
    }
    Variable.set(names.estop_variable_name(session.name), latch, overwrite=True)


def publish_result(
    session: DeviceSession, action: str, result: dict[str, Any], started_at: float | None = None
) -> dict[str, Any]:
    """Attach `result` to the current run as a table artifact and return it (JSON-ready).

    The document also carries the resort, the action, the run id and the body's start and end
    times (epoch seconds; `started_at` is what the dispatch benchmark measures against).
    """
    document = {
        "resort": session.name,
        "action": action,
        "flow_run_id": str(runtime_flow_run.id) if runtime_flow_run.id else None,
        "started_at": started_at,
        "finished_at": time.time(),
        **result,
    }
    create_table_artifact(
        table=[{"field": k, "value": v} for k, v in document.items()],
        key=artifact_key(session.name, action),
        description=f"{action} on {session.name}",
    )
    return document


def after_move(session: DeviceSession, move: Any) -> dict[str, Any]:
    """Note a finished move in the status; its result fields (target, position, hotel, duration)."""
    result = move.to_dict()
    session.update(position=round(move.position, 3), active_hotel=move.hotel, last_error=None)
    return {
        "target": round(result["target"], 3),
        "position": round(result["position"], 3),
        "hotel": result["hotel"],
        "duration": round(result["duration"], 3),
    }


@flow(name="activate-hotel", **FLOW_OPTIONS)
def activate_hotel(hotel: str, lease: str | None = None) -> dict[str, Any]:
    """Bring `hotel` (by name, e.g. "B") into the access position (needs the lock's `lease`)."""
    session, started = _begin()
    get_run_logger().info("%s: activating hotel %s", session.name, hotel)
    with session.motion(permit=_holds_lock(session, lease)) as driver:
        move = driver.activate_hotel(hotel)
    result = {"hotel_requested": hotel, **after_move(session, move)}
    return publish_result(session, "activate-hotel", result, started)


@flow(name="go-home", **FLOW_OPTIONS)
def go_home(lease: str | None = None) -> dict[str, Any]:
    """Turn the carousel to resort angle 0 (needs the lock's `lease`)."""
    session, started = _begin()
    get_run_logger().info("%s: going home", session.name)
    with session.motion(permit=_holds_lock(session, lease)) as driver:
        move = driver.go_home()
    return publish_result(session, "go-home", after_move(session, move), started)


@flow(name="move-to-angle", **FLOW_OPTIONS)
def move_to_angle(angle: float, lease: str | None = None) -> dict[str, Any]:
    """Turn the carousel to `angle` degrees (resort frame; needs the lock's `lease`)."""
    session, started = _begin()
    get_run_logger().info("%s: moving to %.2f deg", session.name, angle)
    with session.motion(permit=_holds_lock(session, lease)) as driver:
        move = driver.move_to_angle(angle)
    return publish_result(session, "move-to-angle", after_move(session, move), started)


@flow(name="set-speed", **FLOW_OPTIONS)
def set_speed(
    speed: float, acceleration: float | None = None, lease: str | None = None
) -> dict[str, Any]:
    """Set the carousel speed (deg/s) and optionally acceleration (deg/s^2) for later moves
    (needs the lock's `lease`)."""
    session, started = _begin()
    with session.device(permit=_holds_lock(session, lease)) as driver:
        driver.set_speed(speed, acceleration)
        result = {"speed": driver.speed, "acceleration": driver.acceleration}
    session.update()  # publish the status document: it carries the speed in use
    return publish_result(session, "set-speed", result, started)


@flow(name="request-position", **FLOW_OPTIONS)
def request_position() -> dict[str, Any]:
    """Read the carousel angle and the hotel in position (no motion)."""
    session, started = _begin()
    with session.device() as driver:
        position = round(driver.request_position(), 3)
        hotel = driver.request_active_hotel()
    session.update(position=position, active_hotel=hotel)
    result = {"position": position, "hotel": hotel}
    return publish_result(session, "request-position", result, started)


@flow(name="request-health", **FLOW_OPTIONS)
def request_health() -> dict[str, Any]:
    """Read temperature, voltage, current, torque and hardware errors of the servo."""
    session, started = _begin()
    with session.device() as driver:
        health = driver.request_health()
    data = {**health.to_dict(), "ok": health.ok, "estopped": session.estopped}
    session.update(health=health.to_dict())
    return publish_result(session, "request-health", data, started)


@flow(name="reboot-resort", **FLOW_OPTIONS)
def reboot_resort(lease: str | None = None) -> dict[str, Any]:
    """Reboot the servo (clears latched hardware errors) and re-apply the settings, torque off
    (needs the lock's `lease`)."""
    session, started = _begin()
    session.check_estop()
    with session.motion(permit=_holds_lock(session, lease)) as driver:
        health = driver.reboot()
    session.update(health=health.to_dict(), last_error=None)
    return publish_result(session, "reboot-resort", {**health.to_dict(), "ok": health.ok}, started)


@flow(name="emergency-stop", **FLOW_OPTIONS)
def emergency_stop(reason: str = "emergency-stop flow run") -> dict[str, Any]:
    """Torque off and latch the stop on this agent.

    This runs through the work queue, behind any queued run; use `fleet estop` (out of band) to
    stop a move that is running. Clear with `fleet estop-clear`. The stop is also written to the
    resort's latch variable, as `fleet estop` does: without it the agent's next latch read (the
    variable still saying "cleared") would release the stop, and a restarted agent would not be
    stopped.
    """
    session, started = _begin()
    command_id = str(uuid.uuid4())
    at = datetime.datetime.now(datetime.UTC).isoformat()
    session.apply_latch(True, reason, command_id, at=at, stop_again=True, live=True)
    _write_latch(session, reason, command_id, at)
    result = {"estopped": True, "reason": reason, "confirmed": bool(session.estop_confirmed)}
    return publish_result(session, "emergency-stop", result, started)
