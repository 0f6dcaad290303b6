"""The emulated servo's control-table memory: storage, item decoding and write validation.

Items, sizes, ranges and defaults come from `device_agent.control_table`. `ControlTable` answers
which error a READ or WRITE earns (Access, Data Length, Data Range) and stores values; what a
write *does* is the model's business. Reference sections 3, 6.6 and 8.1-8.6.
"""

from __future__ import annotations

from device_agent import control_table as ct

__all__ = [
    "ERR_ACCESS",
    "ERR_INSTRUCTION",
    "ERR_LENGTH",
    "ERR_RANGE",
    "TABLE_SIZE",
    "ControlTable",
]

TABLE_SIZE = 662  # through Indirect Data 56 (661)
ERR_INSTRUCTION = 0x02
ERR_RANGE = 0x04
ERR_LENGTH = 0x05
ERR_ACCESS = 0x07

_INDIRECT_AREAS = ((168, 252), (578, 662))  # Indirect Address/Data 1-28 and 29-56
# Read-only (Data Range Error) while the bus watchdog has expired.
_WATCHDOG_LOCKED = frozenset({"goal_pwm", "goal_current", "goal_velocity", "goal_position"})


class ControlTable:
    """The 662 bytes of an XM430-W350 control table, at their defaults.

    Attributes:
        mem: the raw bytes (little-endian items; reserved bytes stay 0).
    """

    def __init__(self) -> None:
        self.mem = bytearray(TABLE_SIZE)
        for it in ct.CONTROL_TABLE:
            self.store(it, it.default)

    # ------------------------------------------------------------------ values

    def store(self, it: ct.Item, value: int) -> None:
        """Store `value` (two's complement when negative) in `it`."""
        self.mem[it.address : it.address + it.size] = (value & ((1 << (8 * it.size)) - 1)).to_bytes(
            it.size, "little"
        )

    def get(self, name: str) -> int:
        """The value of item `name`, sign-converted where the item is signed."""
        it = ct.item(name)
        raw = int.from_bytes(self.mem[it.address : it.address + it.size], "little")
        return ct.to_signed(raw, it.size) if it.signed else raw

    def set(self, name: str, value: int) -> None:
        """Store `value` in item `name`."""
        self.store(ct.item(name), value)

    def reset_ram(self) -> None:
        """Every RAM item to its default (EEPROM untouched)."""
        for it in ct.CONTROL_TABLE:
            if not it.eeprom:
                self.store(it, it.default)

    def reset_eeprom(self) -> None:
        """Every EEPROM item to its default (FACTORY_RESET)."""
        for it in ct.CONTROL_TABLE:
            if it.eeprom:
                self.store(it, it.default)

    # ------------------------------------------------------------------ instruction checks

    @staticmethod
    def read_error(addr: int, length: int) -> int:
        """The error a READ of `length` bytes at `addr` earns (0 = fine).

        The read must lie inside the table and start at an item or inside the indirect areas;
        it may span reserved bytes (they read 0).
        """
        if addr + length > TABLE_SIZE:
            return ERR_ACCESS
        indirect = any(lo <= addr < hi for lo, hi in _INDIRECT_AREAS)
        if addr not in ct.ITEMS_BY_ADDRESS and not indirect:
            return ERR_ACCESS
        return 0

    @staticmethod
    def items_in(addr: int, data: bytes) -> list[tuple[ct.Item, int]] | int:
        """Split a write into (item, value) pairs, or return the error number."""
        end = addr + len(data)
        if addr not in ct.ITEMS_BY_ADDRESS:
            for it in ct.CONTROL_TABLE:
                if it.address < addr < it.address + it.size:
                    return ERR_LENGTH if it.access == "RW" else ERR_ACCESS
            return ERR_ACCESS
        out: list[tuple[ct.Item, int]] = []
        for it in ct.CONTROL_TABLE:
            if it.address + it.size <= addr or it.address >= end:
                continue
            if it.address + it.size > end:
                return ERR_LENGTH if it.access == "RW" else ERR_ACCESS
            raw = int.from_bytes(data[it.address - addr : it.address - addr + it.size], "little")
            out.append((it, ct.to_signed(raw, it.size) if it.signed else raw))
        return out

    def write_error(self, addr: int, data: bytes) -> int:
        """The error a WRITE of `data` at `addr` earns (0 = fine); nothing is stored."""
        items = self.items_in(addr, data)
        if isinstance(items, int):
            return items
        torque = self.mem[64]
        for it, _ in items:
            if it.access != "RW" or (it.eeprom and torque):
                return ERR_ACCESS
        for it, value in items:
            if not self._value_ok(it, value):
                return ERR_RANGE
        return 0

    def _value_ok(self, it: ct.Item, value: int) -> bool:
        lo, hi = it.minimum, it.maximum
        if lo is not None and hi is not None and not lo <= value <= hi:
            return False
        if it.name == "operating_mode":
            return value in ct.OPERATING_MODES
        if it.name == "drive_mode":
            return not value & ~ct.DRIVE_MODE_BITS
        if self.get("bus_watchdog") == ct.BUS_WATCHDOG_EXPIRED:
            if it.name == "bus_watchdog":
                return value == 0  # 0 clears the expired watchdog; nothing else is taken
            if it.name in _WATCHDOG_LOCKED:
                return False
        if it.name == "goal_position" and self.mem[11] == ct.MODE_POSITION:
            return self.get("min_position_limit") <= value <= self.get("max_position_limit")
        return True
