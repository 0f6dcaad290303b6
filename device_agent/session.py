"""The open device of a running agent, as device subflows see it: `current_device()`.

An agent opens its resort once and keeps it in a `DeviceSession`: the connected driver, the motion
lock (one motion at a time), the e-stop latch, the run being executed and the last error. Device
subflows run inside the agent process (see `device_agent.worker`) and reach the session through
`current_device()`; outside an agent that call raises a clear `DeviceError`.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from device_agent.errors import (
    CommunicationError,
    DeviceError,
    EmergencyStopError,
    MotionAbortedError,
    NotConnectedError,
)
from device_agent.latch import LatchLedger
from device_agent.pi_latch import LatchFile

__all__ = ["DeviceSession", "current_device", "use_session"]

logger = logging.getLogger(__name__)

#: A check run right before a command reaches the motor; raises to refuse it.
Permit = Callable[[], None]

CONFIRM_RETRY = 0.2  # seconds before the first retry to confirm torque off after a stop
CONFIRM_RETRY_MAX = 2.0  # seconds between retries, at most

_current: DeviceSession | None = None
_current_guard = threading.Lock()


class DeviceSession:
    """One open resort inside an agent: driver, motion lock, e-stop latches and status fields.

    Two latches keep a stopped resort stopped: the fleet's (a Prefect variable, mirrored here by
    events and reads) and the Pi's (`latch_file`). Motion needs both clear, and the fleet's must
    have been read since the agent started (`fleet_latch_known`). The session installs itself as
    the driver's `interlock`, so torque cannot come on while either latch is set.

    Args:
        driver: the `device_agent.driver.ResortDriver`.
        name: the resort's name (for messages).
        serial_port: the port path (for messages).
        on_change: called (from any thread) whenever a status field changes.
        latch_file: the Pi's latch (`device_agent.pi_latch.LatchFile`); None = none kept.
        fleet_latch_known: False until the fleet's latch has been read (the agent starts so).
        on_confirmed: called with the command id when a stop is confirmed after the first try.
    """

    def __init__(
        self,
        driver: Any,
        *,
        name: str,
        serial_port: str = "",
        on_change: Callable[[], None] | None = None,
        latch_file: LatchFile | None = None,
        fleet_latch_known: bool = True,
        on_confirmed: Callable[[str | None], None] | None = None,
    ) -> None:
        self.driver = driver
        self.name = name
        self.serial_port = serial_port
        self.latch_file = latch_file
        self.fleet_latch_known = fleet_latch_known
        self.motion_lock = threading.Lock()
        self._on_change = on_change
        self._on_confirmed = on_confirmed
        self._state_lock = threading.Lock()
        self._estopped = threading.Event()
        self._latch_commands = LatchLedger()  # ids of the e-stop commands applied here
        self._latch_lock = threading.Lock()  # one latch command applied at a time
        self._confirming: threading.Thread | None = None
        self.estop_reason: str | None = None
        self.estop_confirmed: bool | None = None  # torque read back 0 after the last stop
        self.cancel_requested = threading.Event()
        self.connected = True
        self.moving = False
        self.current_run: str | None = None
        self.last_error: str | None = None
        self.position: float | None = None
        self.active_hotel: str | None = None
        self.health: dict[str, Any] | None = None
        if hasattr(driver, "interlock"):
            driver.interlock = self.interlock

    # ----------------------------------------------------------------- status
    def _changed(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change()
            except Exception:  # status publication must never break a motion
                logger.debug("status change callback failed", exc_info=True)

    def update(self, **fields: Any) -> None:
        """Set status fields (position, active_hotel, health, last_error, ...) and publish."""
        self.note(**fields)
        self._changed()

    def note(self, **fields: Any) -> None:
        """Set status fields without publishing now; they go out with the next publication.

        The worker notes the run it starts this way: a publication then would be one more
        server write while the run is being started.
        """
        with self._state_lock:
            for key, value in fields.items():
                if not hasattr(self, key):
                    raise AttributeError(f"DeviceSession has no status field {key!r}")
                setattr(self, key, value)

    @property
    def estopped(self) -> bool:
        """True while the e-stop latch is set (either latch, as far as this agent knows)."""
        return self._estopped.is_set()

    @property
    def faulted(self) -> bool:
        """True while the serial link is down (the agent keeps retrying the port)."""
        return not self.connected

    # ----------------------------------------------------------------- e-stop
    def restore_pi_latch(self) -> bool:
        """Read the Pi's latch (before the port is opened); True if it says stopped.

        A stopped (or unreadable) latch sets the in-memory latch; torque is switched off when the
        driver is connected (`ensure_torque_off`).
        """
        record = self.latch_file.latched() if self.latch_file is not None else None
        if record is None:
            return False
        self._estopped.set()
        self.estop_reason = record.reason or "latched on the Pi"
        self._latch_commands.first_time(record.command_id)
        logger.warning("%s: the Pi's e-stop latch is set (%s)", self.name, self.estop_reason)
        self._changed()
        return True

    def latch_estop(
        self, reason: str, command_id: str | None = None, *, at: str | None = None, by: str = ""
    ) -> bool:
        """Latch the stop (memory and the Pi's file) and switch torque off now.

        Safe from any thread, also while a move runs in the device thread: the driver's
        `emergency_stop()` goes out between two bus transactions of the move. When Torque Enable
        does not read back 0, a thread keeps trying until it does (or the stop is cleared).

        Returns:
            True when torque was confirmed off (`estop_confirmed`).
        """
        self._estopped.set()
        self.estop_reason = reason
        confirmed = self.ensure_torque_off(command_id)  # the motor first, then the file (fsync)
        self._write_pi_latch(True, reason, command_id, at=at, by=by)
        self._changed()
        return confirmed

    def ensure_torque_off(self, command_id: str | None = None) -> bool:
        """Torque off and read back; on failure keep trying on a thread. True if confirmed."""
        confirmed = bool(self.driver.emergency_stop())
        self.estop_confirmed = confirmed
        if not confirmed and self._estopped.is_set():
            self.last_error = "emergency stop: torque off not confirmed yet (retrying)"
            self._start_confirming(command_id)
        return confirmed

    def _start_confirming(self, command_id: str | None) -> None:
        if self._confirming is not None and self._confirming.is_alive():
            return
        self._confirming = threading.Thread(
            target=self._confirm_loop, args=(command_id,), name="estop-confirm", daemon=True
        )
        self._confirming.start()

    def _confirm_loop(self, command_id: str | None) -> None:
        delay = CONFIRM_RETRY
        while self._estopped.is_set():
            time.sleep(delay)
            delay = min(delay * 2, CONFIRM_RETRY_MAX)  # a lost link: try on, log less often
            if not self._estopped.is_set():
                return
            if self.driver.emergency_stop():
                self.estop_confirmed = True
                self.last_error = None
                logger.warning("%s: emergency stop confirmed: torque reads off", self.name)
                if self._on_confirmed is not None:
                    self._on_confirmed(command_id)
                self._changed()
                return

    def clear_estop(self) -> bool:
        """Release both latches (motion allowed again); returns True if it was set."""
        was = self._estopped.is_set()
        self._write_pi_latch(False, "cleared", None)
        self._estopped.clear()
        self.estop_reason = None
        self.estop_confirmed = None
        self._changed()
        return was

    def _write_pi_latch(
        self,
        estopped: bool,
        reason: str,
        command_id: str | None,
        *,
        at: str | None = None,
        by: str = "",
    ) -> None:
        if self.latch_file is None:
            return
        try:
            self.latch_file.write(estopped, reason, command_id, by=by, command_at=at)
        except DeviceError as exc:  # the memory latch holds; the status names the problem
            logger.error("%s: %s", self.name, exc)
            self.last_error = str(exc)

    def _pi_latch_newer_than(self, at: str | None, live: bool) -> bool:
        """Whether the Pi's latch (if set) was set after a clear given at `at`.

        A live clear event is given now: it releases the Pi's latch. A clear read from the
        fleet's variable may be old: it must not release a stop set on the Pi after it (e.g. by
        `device-agent ctl estop` while the variable said clear), and one with no time, or a latch
        file that cannot be read, is not released that way either.
        """
        if live:
            return False
        record = self.latch_file.latched() if self.latch_file is not None else None
        if record is None:
            return False
        if not record.at:  # unreadable
            return True
        cleared, stopped = _instant(at), _instant(record.command_at or record.at)
        return cleared is None or stopped is None or cleared <= stopped

    def apply_latch(
        self,
        estopped: bool,
        reason: str,
        command_id: object,
        *,
        at: str | None = None,
        stop_again: bool = False,
        live: bool = False,
        by: str = "",
    ) -> bool:
        """Apply an e-stop latch command once, by its id; False if it was applied before.

        A copy of an applied command changes nothing: a late copy of a stop must not undo the
        clear that followed it, nor a late clear the stop (`device_agent.latch`). The id is
        recorded even when the resort is already in the wanted state. A stop is sent to the motor
        again when `stop_again` (a live stop event) or when the resort was not stopped. A clear
        releases the resort only when it is newer (`at`, ISO 8601) than the Pi's latch.

        Args:
            estopped: stop (True) or clear.
            reason: the stop's reason.
            command_id: the command's id (`fleet.core.estop`), None for a hand-written latch.
            at: when the command was given.
            stop_again: send torque-off again even when already stopped.
            live: the command arrived as a live event (not a read of the latch variable).
            by: who gave it.
        """
        with self._latch_lock:
            if not self._latch_commands.first_time(command_id):
                return False
            cid = command_id if isinstance(command_id, str) else None
            if estopped and (stop_again or not self.estopped):
                self.latch_estop(reason, cid, at=at, by=by)
            elif not estopped and self.estopped:
                if self._pi_latch_newer_than(at, live):
                    logger.warning(
                        "%s: clear %s (given %s) is older than the Pi's e-stop latch: "
                        "still stopped; clear again",
                        self.name,
                        cid,
                        at or "at an unknown time",
                    )
                    self.estop_reason = (
                        f"{self.estop_reason or 'latched'}; a clear older than the Pi's latch "
                        "was ignored: clear again"
                    )
                    self._changed()
                else:
                    self.clear_estop()
            return True

    def check_estop(self) -> None:
        """Raise `EmergencyStopError` while a latch is set or the fleet's is not known yet."""
        if self._estopped.is_set():
            raise EmergencyStopError(
                f"{self.name} is emergency-stopped ({self.estop_reason or 'no reason given'}); "
                f"motion is refused until `fleet estop-clear {self.name}`"
            )
        if not self.fleet_latch_known:
            raise EmergencyStopError(
                f"{self.name}: the fleet's e-stop latch has not been read since the agent "
                "started (Prefect server unreachable?); motion is refused until it is"
            )

    def interlock(self) -> None:
        """The driver's last check before torque-on: both latches clear, re-reading the Pi's."""
        self.check_estop()
        if self.restore_pi_latch():
            self.check_estop()

    def check_connected(self) -> None:
        """Raise `NotConnectedError` while the serial link is down."""
        if not self.connected:
            raise NotConnectedError(
                f"{self.name}: serial port {self.serial_port or '?'} is not connected "
                f"({self.last_error or 'link lost'}); the agent keeps retrying it"
            )

    # ----------------------------------------------------------------- use
    @contextlib.contextmanager
    def device(self, permit: Permit | None = None) -> Iterator[Any]:
        """Use the driver for a non-motion command; records link loss.

        Args:
            permit: called before the driver is handed out; raises to refuse (the lease check
                of a maintenance run).

        Yields:
            the driver.
        """
        self.check_connected()
        if permit is not None:
            permit()
        try:
            yield self.driver
        except CommunicationError as exc:
            self.mark_link_error(exc)
            raise

    @contextlib.contextmanager
    def motion(self, *, permit: Permit | None, timeout: float = 5.0) -> Iterator[Any]:
        """Take the motion lock for one move; refuse while e-stopped or disconnected.

        Args:
            permit: called with the motion lock held, right before the driver is handed out (so
                before the move's first write); raises to refuse the move. Device subflows pass
                the check of the resort lock's lease here; None only where no lock applies.
            timeout: seconds to wait for the motion lock (another motion in progress).

        Yields:
            the driver.

        Raises:
            EmergencyStopError: the latch is set (before or during the move).
            NotConnectedError: the serial link is down.
            MotionAbortedError: the run was cancelled.
        """
        self.check_estop()
        self.check_connected()
        if self.cancel_requested.is_set():
            raise MotionAbortedError(f"{self.name}: the run was cancelled before the move")
        if not self.motion_lock.acquire(timeout=timeout):
            raise DeviceError(f"{self.name}: another motion holds the device for {timeout} s")
        try:
            self.check_estop()
            if permit is not None:
                permit()
            self.update(moving=True)
            try:
                yield self.driver
            except MotionAbortedError as exc:
                if self.estopped:
                    raise EmergencyStopError(
                        f"{self.name}: move aborted by emergency stop "
                        f"({self.estop_reason or 'no reason given'})"
                    ) from exc
                raise
            except CommunicationError as exc:
                self.mark_link_error(exc)
                raise
        finally:
            self.moving = False
            self.motion_lock.release()
            self._changed()

    def mark_link_error(self, exc: BaseException) -> None:
        """Record a lost or failing serial link: status goes faulted until a reconnect works."""
        self.update(connected=False, last_error=f"{type(exc).__name__}: {exc}", moving=False)


def _instant(text: str | None) -> datetime.datetime | None:
    """An ISO 8601 time as an aware datetime (None when missing or unparsable)."""
    if not text:
        return None
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def current_device() -> DeviceSession:
    """The open device of the agent this code runs in (for device subflows).

    Raises:
        DeviceError: not inside a device agent (no session is open).
    """
    session = _current
    if session is None:
        raise DeviceError(
            "current_device() is only available inside a device agent "
            "(`device-agent run`); device subflows must run on their resort's work queue"
        )
    return session


@contextlib.contextmanager
def use_session(session: DeviceSession) -> Iterator[DeviceSession]:
    """Make `session` the process's current device for the duration of the block."""
    global _current  # noqa: PLW0603 - one open device per agent process
    with _current_guard:
        previous, _current = _current, session
    try:
        yield session
    finally:
        with _current_guard:
            _current = previous
