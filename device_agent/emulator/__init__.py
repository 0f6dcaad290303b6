"""Protocol-faithful XM430-W350 emulator: in memory (unit tests) or on a pty in its own process.

`XM430Model` is the servo (control table, Protocol 2.0, motion profile, faults, write log);
`MemoryPort` puts it under the real SDK's packet handler in-process; `device-agent emulate` serves
it on a pseudo-terminal (`device_agent.emulator.pty_server`).
"""

from __future__ import annotations

from device_agent.emulator.faults import FAULT_KINDS, HARDWARE_FAULTS
from device_agent.emulator.memory_port import MemoryPort
from device_agent.emulator.model import Reply, XM430Model

__all__ = ["FAULT_KINDS", "HARDWARE_FAULTS", "MemoryPort", "Reply", "XM430Model"]
