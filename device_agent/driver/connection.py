"""The driver's base part: the state all parts share, bring-up and servo configuration.

`DriverConnection` opens the port, checks the model, verifies EEPROM and applies the RAM settings
(`device_agent.servo_config`), never switching torque on. It also keeps the carousel speed and
acceleration the driver uses (`set_speed`). The other parts of `ResortDriver` build on it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from device_agent import control_table as ct
from device_agent import servo_config
from device_agent.errors import ConfigurationError, NotConnectedError
from device_agent.settings import DeviceConfig
from device_agent.transport import Transport

__all__ = ["DriverConnection", "Interlock"]

log = logging.getLogger(__name__)

Interlock = Callable[[], None]


class DriverConnection:
    """Bring-up and configuration of the servo behind `transport` (see `ResortDriver`)."""

    def __init__(
        self,
        transport: Transport,
        config: DeviceConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        interlock: Interlock | None = None,
    ) -> None:
        """Hold the wire and settings; nothing is sent before `connect()` (Args: `ResortDriver`)."""
        self.transport = transport
        self.config = config
        self.interlock = interlock
        self._sleep = sleep
        self._clock = clock
        # bring-up and configuration (this part)
        self._opened = False
        self._configured = False
        self._speed = config.speed
        self._acceleration = config.acceleration
        self._velocity_limit = 0
        self._ram = servo_config.RamSettings(0, 0, servo_config.torque_cap(config))
        self.power_losses = 0  # RAM resets noticed while connected (power blips, foreign reboots)
        # stops (`DriverStops`) and moves (`DriverMoves`)
        self._abort = threading.Event()
        self._abort_reason = "emergency stop"
        self._gate = threading.Lock()  # torque-on vs emergency stop
        self._motion = threading.Lock()  # one move at a time
        self._seam = max(1, ct.degrees_to_ticks(config.position_tolerance))  # tolerance, pulses

    def __repr__(self) -> str:
        return f"ResortDriver({self.config.name!r}, port={self.config.serial_port!r})"

    @property
    def _who(self) -> str:
        return self.config.name

    @property
    def connected(self) -> bool:
        """True after a successful `connect()` (settings applied) until `close()`."""
        return self._configured and self.transport.is_open

    @property
    def speed(self) -> float:
        """Carousel speed in use, deg/s (the config's until `set_speed`)."""
        return self._speed

    @property
    def acceleration(self) -> float:
        """Carousel acceleration in use, deg/s^2 (0 = rectangular profile)."""
        return self._acceleration

    def connect(self, *, configure: bool = True) -> None:
        """Open the port, check the model, verify EEPROM and apply the RAM settings.

        Never switches torque on (a move does). Torque is switched off only when an EEPROM item
        must be rewritten. A latched hardware error is left for `reboot()`, so health can still
        be read. A no-op when already done.

        Args:
            configure: False only opens and pings (read-only diagnostics, e-stop, reboot).

        Raises:
            ConfigurationError: wrong model, baud rate refused, a setting did not stick, or the
                servo cannot give the configured torque cap.
            PortLostError: the serial device is missing.
            PortBusyError: another process holds the serial port.
            CommunicationError: the servo does not answer.
        """
        if not self.transport.is_open:
            self._opened = self._configured = False
            self.transport.open()
        if not self._opened:
            model = self.transport.ping()
            if model != ct.MODEL_NUMBER_XM430_W350:
                raise ConfigurationError(
                    f"{self._who}: servo id {self.config.motor_id} on "
                    f"{self.config.serial_port} is model {model}, expected "
                    f"{ct.MODEL_NUMBER_XM430_W350} (XM430-W350)"
                )
            self._opened = True
        if configure and not self._configured:
            self._configure()
            self._configured = True
            log.info("%s: connected on %s", self._who, self.config.serial_port)

    def reconnect(self) -> None:
        """Rebuild the port object (recovery after a USB replug) and connect again (no torque)."""
        self._opened = self._configured = False
        self.transport.reopen()
        self.connect()

    def close(self) -> None:
        """Close the port. Torque stays as it is (the carousel keeps holding its position)."""
        self._opened = self._configured = False
        self.transport.close()

    def _configure(self) -> None:
        eeprom = servo_config.check_eeprom(self.transport, self.config, self._who)
        self._velocity_limit = eeprom["velocity_limit"]
        if eeprom["hardware_error_status"]:
            log.warning(
                "%s: hardware error %s latched: torque stays off until reboot",
                self._who,
                ", ".join(ct.decode_hardware_error(eeprom["hardware_error_status"])),
            )
        self._ram = self._ram_settings(self._speed, self._acceleration)
        servo_config.apply_ram(self.transport, self._ram, self._who)

    def _ram_settings(self, speed: float, acceleration: float) -> servo_config.RamSettings:
        velocity, accel = servo_config.profile_units(
            self._who, speed, acceleration, self._velocity_limit
        )
        return servo_config.RamSettings(velocity, accel, servo_config.torque_cap(self.config))

    def _require(self, *, configured: bool = True) -> None:
        if not self.transport.is_open or not (self._configured if configured else self._opened):
            raise NotConnectedError(f"{self._who}: not connected (call connect() first)")

    def set_speed(self, speed: float, acceleration: float | None = None) -> None:
        """Set the carousel speed (deg/s) and optionally acceleration (deg/s^2, 0 = rectangular).

        Kept for this driver's life (re-applied after reboot/reconnect/power loss), not written
        back to the inventory.
        """
        self._require()
        accel = self._acceleration if acceleration is None else float(acceleration)
        ram = self._ram_settings(float(speed), accel)
        servo_config.write_verified(
            self.transport, "profile_acceleration", ram.profile_acceleration, self._who
        )
        servo_config.write_verified(
            self.transport, "profile_velocity", ram.profile_velocity, self._who
        )
        self._ram = ram
        self._speed, self._acceleration = float(speed), accel
