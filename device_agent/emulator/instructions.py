"""The emulated servo's Protocol 2.0 instructions: what each reads, writes and answers.

`InstructionSet._execute` runs one decoded instruction (PING, READ, WRITE, REG_WRITE, ACTION,
REBOOT, SYNC_READ, SYNC_WRITE, BULK_READ, CLEAR, FACTORY_RESET) against the servo and returns the
statuses to send; `_after_write` is what an accepted write sets off (torque, a move, a new mode).
Which error a READ or WRITE earns is decided by `table.ControlTable`.
"""

from __future__ import annotations

from types import MappingProxyType

from device_agent import control_table as ct
from device_agent.emulator import protocol as p
from device_agent.emulator.servo import POSITION_MODES, Servo
from device_agent.emulator.table import ERR_ACCESS, ERR_INSTRUCTION, ERR_LENGTH

__all__ = ["InstructionSet"]

_DYNAMIC_FIRST = 120  # realtime tick .. present temperature are computed on read
_DYNAMIC_LAST = 146
# The item a goal write in each mode targets (Drive Mode bit 3 turns torque on by writing it).
_MODE_GOAL = MappingProxyType(
    {
        ct.MODE_CURRENT: "goal_current",
        ct.MODE_VELOCITY: "goal_velocity",
        ct.MODE_POSITION: "goal_position",
        ct.MODE_EXTENDED_POSITION: "goal_position",
        ct.MODE_CURRENT_POSITION: "goal_position",
        ct.MODE_PWM: "goal_pwm",
    }
)


class InstructionSet(Servo):
    """The servo executing instructions (see `XM430Model.handle`)."""

    def _error_byte(self, err: int) -> int:
        return err | (ct.ALERT_BIT if self._mem[70] else 0)

    def _execute(self, pkt: p.Instruction, now: float) -> list[tuple[int, bytes]]:
        """Run `pkt`; return the (error byte, params) of each status to send."""
        inst, prm = pkt.instruction, pkt.params
        broadcast = pkt.motor_id == ct.BROADCAST_ID
        srl = self._mem[68]

        def status(err: int, data: bytes = b"", *, level: int = 2) -> list[tuple[int, bytes]]:
            if broadcast or srl < level:
                return []
            return [(self._error_byte(err), data)]

        if inst == p.INST_PING:
            data = bytes((ct.MODEL_NUMBER_XM430_W350 & 0xFF, ct.MODEL_NUMBER_XM430_W350 >> 8))
            return [(self._error_byte(0), data + bytes((self._mem[6],)))]
        if inst == p.INST_READ:
            if len(prm) != 4:
                return status(ERR_LENGTH, level=1)
            addr, length = _u16(prm, 0), _u16(prm, 2)
            err, data = self._read(addr, length, now)
            return status(err, data, level=1)
        if inst in (p.INST_WRITE, p.INST_REG_WRITE):
            if len(prm) < 3:
                return status(ERR_LENGTH)
            addr, data = _u16(prm, 0), prm[2:]
            err = self._table.write_error(addr, data)
            if not err:
                if inst == p.INST_WRITE:
                    self._apply_write(addr, data, now)
                else:
                    self._pending_reg = (addr, bytes(data))
                    self._mem[69] = 1
            return status(err)
        if inst == p.INST_ACTION:
            if self._pending_reg is None:
                return []  # the SDK never waits for an ACTION status
            addr, data = self._pending_reg
            self._pending_reg = None
            self._mem[69] = 0
            if not self._table.write_error(addr, data):
                self._apply_write(addr, data, now)
            return []
        if inst == p.INST_REBOOT:
            out = status(0)
            self._log_event("reboot", now)
            self._power_on(now)
            return out
        if inst == p.INST_SYNC_READ:
            if not broadcast or len(prm) < 5:
                return []
            addr, length = _u16(prm, 0), _u16(prm, 2)
            if self.motor_id not in prm[4:]:
                return []
            err, data = self._read(addr, length, now)
            return [(self._error_byte(err), data)]
        if inst == p.INST_BULK_READ:
            if not broadcast:
                return []
            for i in range(0, len(prm) - 4, 5):
                if prm[i] == self.motor_id:
                    err, data = self._read(_u16(prm, i + 1), _u16(prm, i + 3), now)
                    return [(self._error_byte(err), data)]
            return []
        if inst == p.INST_SYNC_WRITE:
            if not broadcast or len(prm) < 4:
                return []
            addr, length = _u16(prm, 0), _u16(prm, 2)
            step = 1 + length
            for i in range(4, len(prm) - length, step):
                if prm[i] == self.motor_id:
                    data = prm[i + 1 : i + 1 + length]
                    if not self._table.write_error(addr, data):
                        self._apply_write(addr, data, now)
            return []
        if inst == p.INST_CLEAR:
            return status(0)
        if inst == p.INST_FACTORY_RESET:
            if self._mem[64]:
                return status(ERR_ACCESS)
            out = status(0)
            keep_id, keep_baud = self._mem[7], self._mem[8]
            option = prm[0] if prm else 0xFF
            self._table.reset_eeprom()
            if option in (0x01, 0x02):
                self._mem[7] = keep_id
            if option == 0x02:
                self._mem[8] = keep_baud
            self._log_event("reboot", now)
            self._power_on(now)
            return out
        return status(ERR_INSTRUCTION)

    def _read(self, addr: int, length: int, now: float) -> tuple[int, bytes]:
        err = self._table.read_error(addr, length)
        if err:
            return err, b""
        if addr <= _DYNAMIC_LAST + 1 and addr + length > _DYNAMIC_FIRST:
            self._refresh(now)
        return 0, bytes(self._mem[addr : addr + length])

    def _apply_write(self, addr: int, data: bytes, now: float) -> None:
        items = self._table.items_in(addr, data)
        assert not isinstance(items, int)
        for it, value in items:
            self._write_log.write(
                self.motor_id,
                it,
                value,
                moving=self._motion.moving(now),
                torque=bool(self._mem[64]),  # before the write: a goal written with torque off
            )
            old = self._get(it.name)
            self._table.store(it, value)
            self._after_write(it.name, value, old, now)

    def _after_write(self, name: str, value: int, old: int, now: float) -> None:
        motion = self._motion
        mode = self._mem[11]
        torque_by_goal = self._mem[10] & ct.DRIVE_MODE_TORQUE_ON_BY_GOAL
        if name == "torque_enable":
            if value and not old:
                self._mem[64] = 0
                self._torque_on(now)
            elif not value:
                self._torque_off(now)
        elif name == _MODE_GOAL.get(mode) and not self._mem[64] and torque_by_goal:
            self._torque_on(now)  # Drive Mode bit 3; in modes 3/4/5 it drives to the new goal
        elif name == "goal_position" and self._mem[64] and mode in POSITION_MODES:
            motion.settle(now)
            self._start_move(motion.present(now), value, now)
        elif name == "goal_current" and self._mem[64] and mode == ct.MODE_CURRENT_POSITION:
            prof = motion.profile
            if prof is not None and motion.block == "cap" and abs(value) >= self._need:
                self._start_move(motion.present(now), prof.target, now)
            elif motion.block is None and motion.moving(now) and abs(value) < self._need:
                motion.hold_here(now, "cap")
            self._update_overload(now)
        elif name == "operating_mode":
            self._set("profile_velocity", 0)
            self._set("profile_acceleration", 0)
            self._set("goal_pwm", self._get("pwm_limit"))
            self._set("goal_current", self._get("current_limit"))
            if value == ct.MODE_POSITION:
                motion.reframe()


def _u16(data: bytes, i: int) -> int:
    return data[i] | (data[i + 1] << 8)
