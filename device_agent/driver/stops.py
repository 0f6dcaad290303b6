"""The driver's stops and faults: emergency stop, halt, torque off, hardware errors and reboot.

`emergency_stop()` and `halt()` may come from another thread while a move waits: they set the
abort flag the move checks between its transactions. Torque-on and the emergency stop are
serialised by the `_gate` lock, so a move about to energise the motor either does so before the
stop (which then cuts it) or sees the stop and does not. A hardware error read while moving is
raised as `MotorFaultError` with the decoded bit names, torque off; only `reboot()` clears it.
"""

from __future__ import annotations

import logging

from device_agent import control_table as ct
from device_agent.driver.reads import DriverReads
from device_agent.errors import (
    CommunicationError,
    DeviceError,
    MotionAbortedError,
    MotorFaultError,
    NotConnectedError,
    PortLostError,
)
from device_agent.results import Health

__all__ = ["REBOOT_SILENCE", "REBOOT_TIMEOUT", "DriverStops"]

log = logging.getLogger(__name__)

REBOOT_SILENCE = 0.5  # the servo is silent ~0.4 s after REBOOT
REBOOT_TIMEOUT = 5.0  # give up pinging a rebooting servo after this long


class DriverStops(DriverReads):
    """Stopping the carousel and recovering from hardware errors (see `ResortDriver`)."""

    def _check_abort(self) -> None:
        if self._abort.is_set():
            raise MotionAbortedError(f"{self._who}: move aborted by {self._abort_reason}")

    def _raise_if_faulted(self, during: str) -> None:
        bits = self.transport.read("hardware_error_status")
        if bits:
            names = ct.decode_hardware_error(bits)
            self._safe_torque_off()
            raise MotorFaultError(
                f"{self._who}: hardware error {', '.join(names) or hex(bits)} ({during}); "
                "torque is off until reboot",
                bits=bits,
                names=names,
            )

    def _safe_torque_off(self) -> None:
        try:
            self.transport.write("torque_enable", 0)
        except DeviceError as exc:
            log.warning("%s: could not switch torque off: %s", self._who, exc)

    # -- stops ------------------------------------------------------------------------------------

    def emergency_stop(self) -> bool:
        """Torque off now; True once Torque Enable reads back 0.

        Safe from another thread while a move waits: the move then raises `MotionAbortedError`,
        and the torque write goes out between two of its transactions. Never raises: a stop that
        cannot be confirmed (link lost, no answer) returns False and the caller keeps trying.
        """
        with self._gate:
            self._abort_reason = "emergency stop"
            self._abort.set()
            for attempt in range(2):
                try:
                    self.transport.write("torque_enable", 0)
                    confirmed = self.transport.read("torque_enable") == 0
                except (PortLostError, NotConnectedError) as exc:
                    log.error("%s: emergency stop not confirmed: %s", self._who, exc)
                    return False
                except DeviceError as exc:
                    log.warning("%s: emergency stop attempt %d: %s", self._who, attempt + 1, exc)
                    continue
                if confirmed:
                    log.warning("%s: emergency stop: torque off (read back)", self._who)
                    return True
        log.error("%s: emergency stop not confirmed: Torque Enable does not read 0", self._who)
        return False

    def halt(self) -> None:
        """Controlled stop: goal = present position (torque stays on); a waiting move aborts."""
        if not (self._abort.is_set() and self._abort_reason == "emergency stop"):
            self._abort_reason = "halt"  # an e-stop already under way keeps precedence
        self._abort.set()
        present = self.transport.read("present_position")
        self.transport.write("goal_position", present)
        log.info("%s: halted at %.2f deg", self._who, self._position(present))

    def reboot(self) -> Health:
        """REBOOT the servo (clears latched hardware errors), wait, re-apply settings.

        Torque stays off afterwards (the next move switches it on).

        Returns:
            Health after the reboot.

        Raises:
            CommunicationError: the servo did not answer within a few seconds.
        """
        self._require(configured=False)
        self.transport.reboot()
        self._configured = False
        self._sleep(REBOOT_SILENCE)
        deadline = self._clock() + REBOOT_TIMEOUT
        while True:
            try:
                self.transport.ping()
                break
            except PortLostError:
                raise
            except CommunicationError:
                if self._clock() >= deadline:
                    raise
                self._sleep(0.1)
        self._configure()
        self._configured = True
        log.info("%s: rebooted", self._who)
        return self.request_health()
