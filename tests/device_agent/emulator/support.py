"""Helpers for the emulator tests: an XM430Model on a MemoryPort under the real SDK."""

from __future__ import annotations

import time
from dataclasses import dataclass

from dynamixel_sdk import COMM_SUCCESS, PacketHandler

from device_agent import control_table as ct
from device_agent.emulator import MemoryPort, XM430Model

__all__ = ["ACCESS", "ALERT", "INSTRUCTION", "LENGTH", "RANGE", "Bus", "FakeClock", "make_bus"]

# Status error numbers (Access, Data Range, Data Length, Instruction) and the alert bit.
ACCESS, RANGE, LENGTH, INSTRUCTION = 0x07, 0x04, 0x05, 0x02
ALERT = 0x80


class FakeClock:
    """A hand-stepped monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Step the clock forward."""
        self.now += seconds


@dataclass
class Bus:
    """A model on a `MemoryPort` under the real `PacketHandler`: items by name at ID 1."""

    model: XM430Model
    port: MemoryPort
    ph: PacketHandler
    clock: FakeClock | None = None

    def read(self, name: str) -> tuple[int, int, int]:
        """(signed value, comm result, error byte) via the SDK."""
        it = ct.item(name)
        fn = {1: self.ph.read1ByteTxRx, 2: self.ph.read2ByteTxRx, 4: self.ph.read4ByteTxRx}
        value, result, error = fn[it.size](self.port, 1, it.address)
        return (ct.to_signed(value, it.size) if it.signed else value), result, error

    def value(self, name: str) -> int:
        """The signed value of `name` (the read must succeed)."""
        value, result, _ = self.read(name)
        assert result == COMM_SUCCESS
        return value

    def write(self, name: str, value: int, size: int | None = None) -> tuple[int, int]:
        """(comm result, error byte) of a write of `name` (`size` bytes, default its own)."""
        it = ct.item(name)
        fn = {1: self.ph.write1ByteTxRx, 2: self.ph.write2ByteTxRx, 4: self.ph.write4ByteTxRx}
        return fn[size or it.size](self.port, 1, it.address, value & 0xFFFFFFFF)

    def ok(self, name: str, value: int) -> None:
        """Write `name` and assert the servo took it."""
        assert self.write(name, value) == (COMM_SUCCESS, 0), name

    def block(self, address: int, length: int) -> tuple[dict[str, int], bytes]:
        """One READ of `length` bytes at `address`: (decoded items, raw bytes)."""
        raw, result, error = self.ph.readTxRx(self.port, 1, address, length)
        assert (result, error) == (COMM_SUCCESS, 0), (address, length, error)
        return ct.decode_block(address, raw), bytes(raw)

    @property
    def fake(self) -> FakeClock:
        """The hand-stepped clock (only on a bus made with ``fake_clock=True``)."""
        assert self.clock is not None
        return self.clock


def make_bus(instant: bool = True, fake_clock: bool = False, **kwargs: object) -> Bus:
    """A fresh model (``kwargs`` go to `XM430Model`) on an open port at 57600 baud."""
    clock = FakeClock() if fake_clock else None
    model = XM430Model(instant=instant, clock=clock or time.monotonic, **kwargs)  # type: ignore[arg-type]
    port = MemoryPort(model)
    assert port.openPort()
    assert port.setBaudRate(57600)
    return Bus(model, port, PacketHandler(2.0), clock)
