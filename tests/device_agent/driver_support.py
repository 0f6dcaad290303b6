"""Helpers for the driver tests: the real SDK transport over the emulator's in-memory port."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from device_agent.driver import ResortDriver
from device_agent.emulator import MemoryPort, XM430Model
from device_agent.emulator import protocol as p
from device_agent.settings import DeviceConfig
from device_agent.transport import SdkTransport

HOTELS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class SentWrite:
    """One WRITE instruction the driver put on the wire."""

    address: int
    data: bytes

    @property
    def value(self) -> int:
        """Little-endian value of the data."""
        return int.from_bytes(self.data, "little")


class RecordingPort(MemoryPort):
    """`MemoryPort` that also decodes every instruction the host sends (shared `sent` list).

    An instruction matched by one of `refuse` never reaches the servo: the wire answers it with
    a Data Range Error status, as a servo refusing the value would.
    """

    def __init__(
        self,
        model: XM430Model,
        port_name: str,
        sent: list[p.Instruction],
        refuse: list[Callable[[p.Instruction], bool]] | None = None,
    ) -> None:
        super().__init__(model, port_name)
        self._parser = p.PacketParser()
        self._sent = sent
        self._refuse = refuse if refuse is not None else []

    def writePort(self, packet: bytes | bytearray | list[int]) -> int:
        """Record, then send to the model (or answer a refused instruction here)."""
        for pkt in self._parser.feed(bytes(packet)):
            if isinstance(pkt, p.Instruction):
                self._sent.append(pkt)
                if any(refused(pkt) for refused in self._refuse):
                    status = p.build_status(pkt.motor_id, 0x04, b"")
                    self._pending.append((time.monotonic(), status))
                    return len(packet)
        return super().writePort(packet)


@dataclass
class Rig:
    """A driver on the real SDK packet handler over an in-memory XM430."""

    model: XM430Model
    transport: SdkTransport
    driver: ResortDriver
    sent: list[p.Instruction] = field(default_factory=list)
    ports: list[RecordingPort] = field(default_factory=list)
    refuse: list[Callable[[p.Instruction], bool]] = field(default_factory=list)

    def writes(self) -> list[SentWrite]:
        """Every WRITE instruction sent so far."""
        return [
            SentWrite(i.params[0] | (i.params[1] << 8), bytes(i.params[2:]))
            for i in self.sent
            if i.instruction == p.INST_WRITE
        ]

    def written_addresses(self) -> set[int]:
        """Addresses the driver wrote to."""
        return {w.address for w in self.writes()}


def make_config(**overrides: object) -> DeviceConfig:
    """A DeviceConfig with four hotels and quick defaults for tests."""
    data: dict[str, object] = {
        "name": "resort-t",
        "serial_port": "memory://xm430",
        "hotels": HOTELS,
        "speed": 180.0,
        "acceleration": 0.0,
        "move_timeout": 10.0,
    }
    data.update(overrides)
    return DeviceConfig.model_validate(data)


def make_rig(
    *, instant: bool = True, connect: bool = True, model: XM430Model | None = None, **config: object
) -> Rig:
    """Build model + recording port + SdkTransport + ResortDriver (connected by default)."""
    model = model or XM430Model(instant=instant)
    cfg = make_config(**config)
    sent: list[p.Instruction] = []
    ports: list[RecordingPort] = []
    refuse: list[Callable[[p.Instruction], bool]] = []

    def factory(name: str) -> RecordingPort:
        port = RecordingPort(model, name, sent, refuse)
        ports.append(port)
        return port

    transport = SdkTransport(cfg.serial_port, cfg.baudrate, cfg.motor_id, port_factory=factory)
    rig = Rig(model, transport, ResortDriver(transport, cfg), sent, ports, refuse)
    if connect:
        rig.driver.connect()
    return rig
