"""The emulator's fault kinds and the injected faults a servo currently has.

Hardware kinds set a bit of Hardware Error Status (70) and stay until REBOOT; the others are flags
(`FaultFlags`) that `clear` removes. What each kind does to the servo is in `XM430Model.inject`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["COMM_FAULTS", "FAULT_KINDS", "HARDWARE_FAULTS", "FaultFlags"]

# Hardware fault kind -> Hardware Error Status (70) bit.
HARDWARE_FAULTS = MappingProxyType(
    {
        "voltage": 0x01,
        "overheat": 0x04,
        "encoder": 0x08,
        "shock": 0x10,
        "overload": 0x20,
    }
)
COMM_FAULTS = ("mute", "corrupt", "late")
# Every kind `inject` accepts (the pty server adds unplug/replug).
FAULT_KINDS = (
    *HARDWARE_FAULTS,
    "stall",
    "jam",
    "power-cycle",
    "mute",
    "unmute",
    "corrupt",
    "late",
    "unplug",
    "replug",
    "clear",
)


@dataclass(slots=True)
class FaultFlags:
    """The injected faults that are not hardware errors (all off at power-on)."""

    mute: bool = False  # nothing is executed or answered
    corrupt: bool = False  # replies carry a bad CRC
    late: bool = False  # replies come after the SDK's timeout
    stall: bool = False  # a move stops partway
    jam: bool = False  # the shaft cannot leave where it is

    def clear(self) -> None:
        """Remove every flag (what ``clear`` does; hardware errors need REBOOT)."""
        self.mute = self.corrupt = self.late = self.stall = self.jam = False

    def names(self, hardware_error: int, *, usb_plugged: bool) -> list[str]:
        """The active faults by kind: hardware bits, comm flags, stall, jam, unplug."""
        faults = [kind for kind, bit in HARDWARE_FAULTS.items() if hardware_error & bit]
        faults += [kind for kind in COMM_FAULTS if getattr(self, kind)]
        if self.stall:
            faults.append("stall")
        if self.jam:
            faults.append("jam")
        if not usb_plugged:
            faults.append("unplug")
        return faults
