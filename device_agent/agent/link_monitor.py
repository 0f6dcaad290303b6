"""The agent's link monitor: reconnects a lost serial port and probes the idle device.

On serial loss runs fail fast (`NotConnectedError`) and the status shows faulted; this thread
retries `driver.reconnect()` every `RECONNECT_INTERVAL` seconds (it never switches torque on; a
latched resort gets torque off again) and the agent resumes when the port is back. While the
link is up it reads the idle device's position and health once per heartbeat (drawn apart,
`device_agent.pacing`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from device_agent.errors import DeviceError
from device_agent.pacing import jittered
from device_agent.session import DeviceSession

__all__ = ["RECONNECT_INTERVAL", "LinkMonitor"]

logger = logging.getLogger(__name__)

RECONNECT_INTERVAL = 1.0  # seconds between attempts to reopen a lost port


class LinkMonitor:
    """A thread that keeps one session's serial link up.

    Args:
        session: the agent's device session.
        shutdown: set when the agent stops; the thread then exits.
        probe_interval: seconds between two reads of the idle device.
        read_position: reads position, hotel and health into the session (raises on failure).
    """

    def __init__(
        self,
        session: DeviceSession,
        shutdown: threading.Event,
        probe_interval: float,
        read_position: Callable[[DeviceSession], None],
    ) -> None:
        self.session = session
        self.shutdown = shutdown
        self.probe_interval = probe_interval
        self.read_position = read_position
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the monitor thread (a daemon)."""
        self._thread = threading.Thread(target=self._main, name="link-monitor", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        session = self.session
        # each probe publishes the status: drawn apart so that agents started together do not
        # write in step for ever (`device_agent.pacing`)
        next_probe = time.monotonic() + jittered(self.probe_interval)
        while True:
            wait = RECONNECT_INTERVAL
            if session.connected:
                wait = min(wait, max(0.0, next_probe - time.monotonic()))
            if self.shutdown.wait(wait):
                return
            if not session.connected:
                self._reconnect()
                continue
            if time.monotonic() < next_probe:
                continue
            next_probe = time.monotonic() + jittered(self.probe_interval)
            if session.current_run is not None or not session.motion_lock.acquire(blocking=False):
                continue
            try:
                self.read_position(session)
            except DeviceError as exc:
                logger.warning("%s: probe failed: %s", session.name, exc)
                session.mark_link_error(exc)
            except Exception:
                logger.exception("%s: probe failed", session.name)
            finally:
                session.motion_lock.release()

    def _reconnect(self) -> None:
        session = self.session
        if not session.motion_lock.acquire(blocking=False):
            return
        try:
            session.driver.reconnect()  # never switches torque on
            if session.estopped:
                session.ensure_torque_off()
            self.read_position(session)
            session.update(last_error=None)
            logger.info("%s: serial link back on %s", session.name, session.serial_port)
        except Exception as exc:
            logger.debug("%s: reconnect failed: %s", session.name, exc)
        finally:
            session.motion_lock.release()
