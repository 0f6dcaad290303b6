"""The driver's reads: the carousel's position and active hotel, torque and health, in user units.

Valid with a latched hardware error too (the alert bit never fails a read), and after a
read-only `connect(configure=False)`.
"""

from __future__ import annotations

import math

from device_agent import control_table as ct
from device_agent.driver.connection import DriverConnection
from device_agent.geometry import angle_difference, resort_angle
from device_agent.results import Health

__all__ = ["DriverReads"]


class DriverReads(DriverConnection):
    """The `request_*` queries of `ResortDriver` and the conversions they share."""

    def _position(self, ticks: int) -> float:
        return resort_angle(ct.ticks_to_degrees(ticks), self.config.rotation_direction)

    def _hotel_at(self, position: float) -> str | None:
        best, best_error = None, math.inf
        for hotel in self.config.hotels:
            error = abs(angle_difference(position, self.config.hotel_angle(hotel)))
            if error < best_error:
                best, best_error = hotel, error
        return best if best_error <= self.config.position_tolerance else None

    def request_position(self) -> float:
        """Present resort-frame angle in degrees ``[0, 360)`` (valid even with an alert)."""
        self._require(configured=False)
        return self._position(self.transport.read("present_position"))

    def request_active_hotel(self) -> str | None:
        """The hotel within `position_tolerance` of the present angle (360-degree wrap), or None."""
        return self._hotel_at(self.request_position())

    def request_torque(self) -> bool:
        """Torque Enable as the servo reads it."""
        self._require(configured=False)
        return bool(self.transport.read("torque_enable"))

    def request_health(self) -> Health:
        """Temperature, voltage, current, torque, moving, decoded hardware errors, warnings."""
        self._require(configured=False)
        t, c = self.transport, self.config
        state = t.read_span("torque_enable", "hardware_error_status")
        live = t.read_span("moving", "present_temperature")
        temperature = float(live["present_temperature"])
        voltage = round(live["present_input_voltage"] * ct.VOLTAGE_V, 2)
        current = round(live["present_current"] * ct.CURRENT_A, 5)
        errors = ct.decode_hardware_error(state["hardware_error_status"])
        warnings = []
        if temperature > c.max_temperature:
            warnings.append(f"temperature {temperature:.0f} C above {c.max_temperature:.0f} C")
        if voltage < c.min_voltage:
            warnings.append(f"voltage {voltage:.1f} V below {c.min_voltage:.1f} V")
        if voltage > c.max_voltage:
            warnings.append(f"voltage {voltage:.1f} V above {c.max_voltage:.1f} V")
        if abs(current) > c.max_current:
            warnings.append(f"current {abs(current):.2f} A above {c.max_current:.2f} A")
        return Health(
            temperature,
            voltage,
            current,
            bool(state["torque_enable"]),
            bool(live["moving"]),
            errors,
            warnings,
        )
