"""The open device of a running agent, as device subflows see it: `current_device()`.

An agent opens its resort once and keeps it in a `DeviceSession`: the connected driver, the motion
lock (one motion at a time), the e-stop latch, the run being executed and the last error. Device
subflows run inside the agent process (see `device_agent.worker`) and reach the session through
`current_device()`; outside an agent that call raises a clear `DeviceError`.
"""

from __future__ import annotations

import contextlib
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

__all__ = ["DeviceSession", "current_device", "use_session"]

logger = logging.getLogger(__name__)

_current: DeviceSession | None = None
_current_guard = threading.Lock()


class DeviceSession:
    """One open resort inside an agent: driver, motion lock, e-stop latch and status fields.

    Args:
        driver: the connected `device_agent.driver.ResortDriver`.
        name: the resort's name (for messages).
        serial_port: the port path (for messages).
        on_change: called (from any thread) whenever a status field changes.
    """

    def __init__(
        self,
        driver: Any,
        *,
        name: str,
        serial_port: str = "",
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.driver = driver
        self.name = name
        self.serial_port = serial_port
        self.motion_lock = threading.Lock()
        self._on_change = on_change
        self._state_lock = threading.Lock()
        self._estopped = threading.Event()
        self._latch_commands = LatchLedger()  # ids of the e-stop commands applied here
        self._latch_lock = threading.Lock()  # one latch command applied at a time
        self.estop_reason: str | None = None
        self.cancel_requested = threading.Event()
        self.connected = True
        self.moving = False
        self.current_run: str | None = None
        self.last_error: str | None = None
        self.position: float | None = None
        self.active_hotel: str | None = None
        self.health: dict[str, Any] | None = None

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
        """True while the e-stop latch is set."""
        return self._estopped.is_set()

    @property
    def faulted(self) -> bool:
        """True while the serial link is down (the agent keeps retrying the port)."""
        return not self.connected

    def latch_estop(self, reason: str) -> bool:
        """Torque off now and latch the stop; returns True if the latch was newly set.

        Safe from any thread, also while a move runs in the device thread: the driver's
        `emergency_stop()` goes out between two bus transactions of the move.
        """
        newly = not self._estopped.is_set()
        self._estopped.set()
        self.estop_reason = reason
        try:
            self.driver.emergency_stop()
        except DeviceError as exc:  # port gone: torque is off anyway once power/link is back
            logger.warning("emergency_stop on %s failed: %s", self.name, exc)
            self.last_error = f"emergency stop: {exc}"
        self._changed()
        return newly

    def clear_estop(self) -> bool:
        """Release the latch (motion allowed again); returns True if it was set."""
        was = self._estopped.is_set()
        self._estopped.clear()
        self.estop_reason = None
        self._changed()
        return was

    def apply_latch(
        self, estopped: bool, reason: str, command_id: object, *, stop_again: bool = False
    ) -> bool:
        """Apply an e-stop latch command once, by its id; False if it was applied before.

        A copy of an applied command changes nothing: a late copy of a stop must not undo the
        clear that followed it, nor a late clear the stop (`device_agent.latch`). The id is
        recorded even when the resort is already in the wanted state. A stop is sent to the motor
        again when `stop_again` (a live stop event) or when the resort was not stopped.
        """
        with self._latch_lock:
            if not self._latch_commands.first_time(command_id):
                return False
            if estopped and (stop_again or not self.estopped):
                self.latch_estop(reason)
            elif not estopped and self.estopped:
                self.clear_estop()
            return True

    def check_estop(self) -> None:
        """Raise `EmergencyStopError` while the latch is set."""
        if self._estopped.is_set():
            raise EmergencyStopError(
                f"{self.name} is emergency-stopped ({self.estop_reason or 'no reason given'}); "
                f"motion is refused until `fleet estop-clear {self.name}`"
            )

    def check_connected(self) -> None:
        """Raise `NotConnectedError` while the serial link is down."""
        if not self.connected:
            raise NotConnectedError(
                f"{self.name}: serial port {self.serial_port or '?'} is not connected "
                f"({self.last_error or 'link lost'}); the agent keeps retrying it"
            )

    # ----------------------------------------------------------------- use
    @contextlib.contextmanager
    def device(self) -> Iterator[Any]:
        """Use the driver for a non-motion command; records link loss.

        Yields:
            the driver.
        """
        self.check_connected()
        try:
            yield self.driver
        except CommunicationError as exc:
            self.mark_link_error(exc)
            raise

    @contextlib.contextmanager
    def motion(self, timeout: float = 5.0) -> Iterator[Any]:
        """Take the motion lock for one move; refuse while e-stopped or disconnected.

        Args:
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

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no motion holds the lock; True if idle within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.moving and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.moving


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
