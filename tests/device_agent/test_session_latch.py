"""The agent session's two e-stop latches (the fleet's and the Pi's file), the lease permit and the
confirmation of torque off; in-memory motor, no server."""

from __future__ import annotations

import datetime
import json
import threading
import time
from pathlib import Path

import pytest

from device_agent.errors import EmergencyStopError
from device_agent.pi_latch import LATCH_FILE, LatchFile, latches_for_port
from device_agent.session import DeviceSession
from tests.device_agent.driver_support import make_rig


def _at(seconds_from_now: float = 0.0) -> str:
    now = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds_from_now)
    return now.isoformat()


def _session(tmp_path: Path, **kw: object) -> tuple[DeviceSession, object, LatchFile]:
    rig = make_rig()
    latch = LatchFile.in_state_dir(tmp_path, resort="resort-t", serial_port="memory://xm430")
    session = DeviceSession(
        rig.driver, name="resort-t", serial_port="memory://xm430", latch_file=latch, **kw
    )
    return session, rig, latch


def test_latch_file_round_trip_is_atomic_and_an_unreadable_one_reads_stopped(
    tmp_path: Path,
) -> None:
    latch = LatchFile.in_state_dir(tmp_path / "a", resort="a", serial_port="/dev/ttyUSB0")
    assert latch.read() is None  # never stopped here
    record = latch.write(True, "arm in the carousel", "cmd-1", by="me", command_at=_at())
    assert latch.read() == record
    assert json.loads(latch.path.read_text())["estopped"] is True
    assert [p.name for p in latch.path.parent.iterdir()] == [LATCH_FILE]  # no temp file left
    latch.path.write_text("{broken")
    unreadable = latch.latched()
    assert unreadable is not None and "latch unreadable" in unreadable.reason
    assert [f.path for f in latches_for_port(tmp_path, "/dev/ttyUSB0")] == [latch.path]
    latch.write(False, "cleared")
    assert latch.latched() is None


def test_a_stop_is_kept_on_the_pi_and_restored_before_the_port_opens(tmp_path: Path) -> None:
    session, _, latch = _session(tmp_path)
    session.apply_latch(True, "fleet estop", "cmd-1", at=_at(), live=True)
    record = latch.latched()
    assert record is not None and record.command_id == "cmd-1"
    restarted, _, _ = _session(tmp_path)  # a new agent process, same state directory
    assert restarted.restore_pi_latch() is True
    assert restarted.estopped
    with pytest.raises(EmergencyStopError, match="fleet estop"):
        restarted.check_estop()


def test_a_clear_older_than_the_pis_latch_does_not_release_it(tmp_path: Path) -> None:
    session, _, latch = _session(tmp_path)
    session.apply_latch(True, "ctl estop", "stop-2", at=_at())
    session.apply_latch(False, "", "clear-1", at=_at(-60))  # read from the variable: older
    assert session.estopped and latch.latched() is not None
    assert "older than the Pi's latch" in (session.estop_reason or "")
    session.apply_latch(False, "", "clear-3", at=_at(+1))
    assert not session.estopped and latch.latched() is None
    session.apply_latch(True, "again", "stop-4", at=_at(+2))
    session.apply_latch(False, "", "clear-5", live=True)  # a live event: given now
    assert not session.estopped and latch.latched() is None


def test_a_clear_without_a_time_does_not_release_the_pis_latch(tmp_path: Path) -> None:
    session, _, _ = _session(tmp_path)
    session.apply_latch(True, "stop", "stop-1", at=_at())
    session.apply_latch(False, "", "clear-hand-written")
    assert session.estopped


def test_an_unreadable_latch_is_released_only_by_a_live_clear(tmp_path: Path) -> None:
    session, _, latch = _session(tmp_path)
    latch.path.write_text("garbage")
    assert session.restore_pi_latch() and session.estopped
    session.apply_latch(False, "", "clear-1", at=_at(+5))  # a read of the variable
    assert session.estopped
    session.apply_latch(False, "", "clear-2", at=_at(+5), live=True)  # the live event
    record = latch.read()
    assert not session.estopped and record is not None and not record.estopped


def test_motion_needs_the_fleet_latch_read_and_the_interlock_rereads_the_file(
    tmp_path: Path,
) -> None:
    session, rig, latch = _session(tmp_path, fleet_latch_known=False)
    with pytest.raises(EmergencyStopError, match="not been read"), session.motion(permit=None):
        pass
    session.fleet_latch_known = True
    with session.motion(permit=None) as driver:
        driver.activate_hotel("B")
    rig.driver.emergency_stop()  # torque off, as after a stop
    latch.write(True, "set on the Pi by hand", None)  # the memory latch does not know yet
    with pytest.raises(EmergencyStopError, match="by hand"), session.motion(permit=None) as driver:
        driver.activate_hotel("C")
    assert rig.model.stats()["torque"] is False


def test_a_refused_permit_leaves_the_motor_untouched(tmp_path: Path) -> None:
    session, rig, _ = _session(tmp_path)

    def no_lease() -> None:
        raise PermissionError("no lease of lock resort:resort-t")

    before = len(rig.writes())
    with pytest.raises(PermissionError, match="no lease"), session.motion(permit=no_lease):
        pass
    with pytest.raises(PermissionError), session.device(permit=no_lease):
        pass
    assert rig.writes()[before:] == []
    assert not session.moving


def test_an_unconfirmed_stop_is_retried_until_torque_reads_off(tmp_path: Path) -> None:
    confirmed: list[str | None] = []
    session, rig, _ = _session(tmp_path, on_confirmed=confirmed.append)
    with session.motion(permit=None) as driver:
        driver.activate_hotel("B")
    rig.model.inject("mute")  # the servo does not answer (link trouble)
    assert session.latch_estop("fleet estop", "cmd-9") is False
    assert session.estop_confirmed is False
    rig.model.inject("unmute")
    deadline = time.monotonic() + 5
    while not confirmed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert confirmed == ["cmd-9"]
    assert session.estop_confirmed is True
    assert rig.model.stats()["torque"] is False


def test_a_stop_racing_a_move_start_leaves_torque_off(tmp_path: Path) -> None:
    """Stops land at random moments of a move's start: torque is always off afterwards."""
    for delay in (0.0, 0.001, 0.003, 0.006, 0.01):
        session, rig, _ = _session(tmp_path / str(delay))
        done = threading.Event()

        def move(s: DeviceSession = session, d: threading.Event = done) -> None:
            try:
                with s.motion(permit=None) as driver:
                    driver.activate_hotel("C")
            except Exception:
                pass
            d.set()

        mover = threading.Thread(target=move)
        mover.start()
        time.sleep(delay)
        session.latch_estop("race", f"cmd-{delay}")
        assert done.wait(5)
        assert rig.model.stats()["torque"] is False, delay
