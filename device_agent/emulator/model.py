"""The XM430-W350 model: control table, Protocol 2.0 instructions, motion, faults, write log.

Transport-free: `XM430Model.feed(bytes)` returns the status packets to send and when. The in-memory
wire (`MemoryPort`) and the pty server both sit on top of it. Facts from
``../shared/reference/dynamixel.md`` sections 2-4 and 6.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from device_agent import control_table as ct
from device_agent.emulator import protocol as p

__all__ = ["FAULT_KINDS", "HARDWARE_FAULTS", "LOGGED_ITEMS", "Reply", "XM430Model"]

_log = logging.getLogger(__name__)

TABLE_SIZE = 662  # through Indirect Data 56 (661)
REBOOT_SILENCE = 0.4  # s without replies after REBOOT (reference 3.3, XC330 measurement)
REBOOT_SILENCE_INSTANT = 0.05
LATE_DELAY = 0.060  # s: after the SDK's ~34-37 ms status timeout
STALL_FRACTION = 0.4  # a stalled move stops this far along its path

# Hardware fault kind -> Hardware Error Status (70) bit.
HARDWARE_FAULTS = {
    "voltage": 0x01,
    "overheat": 0x04,
    "encoder": 0x08,
    "shock": 0x10,
    "overload": 0x20,
}
COMM_FAULTS = ("mute", "corrupt", "late")
# Every kind `inject` accepts (the pty server adds unplug/replug).
FAULT_KINDS = (
    *HARDWARE_FAULTS,
    "stall",
    "mute",
    "unmute",
    "corrupt",
    "late",
    "unplug",
    "replug",
    "clear",
)

# Items whose writes go to the write log.
LOGGED_ITEMS = frozenset(
    {
        "goal_position",
        "torque_enable",
        "profile_velocity",
        "profile_acceleration",
        "operating_mode",
        "drive_mode",
        "shutdown",
    }
)

_ERR_INSTRUCTION = 0x02
_ERR_RANGE = 0x04
_ERR_LENGTH = 0x05
_ERR_ACCESS = 0x07

_DYNAMIC_FIRST = 120  # realtime tick .. present temperature are computed on read
_DYNAMIC_LAST = 146


@dataclass(frozen=True, slots=True)
class Reply:
    """A status packet to put on the wire `delay` seconds after the instruction arrived."""

    data: bytes
    delay: float = 0.0


@dataclass(slots=True)
class _Profile:
    """A planned velocity-based move, in present-position pulses and seconds."""

    start: float  # position at t0
    target: float
    t0: float
    t1: float  # acceleration time, s (0 = rectangular)
    t3: float  # total time, s
    v_peak: float  # pulses/s (>= 0)
    kind: int  # Moving Status profile-type bits (0x30/0x20/0x10/0x00)

    def at(self, now: float) -> tuple[float, float]:
        """Position and velocity (pulses, pulses/s) at `now`."""
        direction = 1.0 if self.target >= self.start else -1.0
        dist = abs(self.target - self.start)
        t = now - self.t0
        if t >= self.t3:
            return self.target, 0.0
        if t <= 0:
            return self.start, 0.0
        v, t1, t3 = self.v_peak, self.t1, self.t3
        if t1 <= 0:  # rectangular
            s, vel = v * t, v
        else:
            a = v / t1
            if t < t1:
                s, vel = 0.5 * a * t * t, a * t
            elif t <= t3 - t1:
                s, vel = 0.5 * v * t1 + v * (t - t1), v
            else:
                r = t3 - t
                s, vel = dist - 0.5 * a * r * r, a * r
        return self.start + direction * min(s, dist), direction * vel


def plan_profile(
    start: float,
    target: float,
    pv: int,
    pa: int,
    now: float,
    vmax: int,
    time_based: bool = False,
) -> _Profile:
    """Plan a profile (reference section 4).

    Velocity-based: t1 = 64*PV/PA ms, t2 = 64*dPos/PV ms, trapezoid t3 = t1 + t2; triangle when
    the move is too short (t3 = 128*sqrt(dPos/PA) ms); PA = 0 is rectangular; PV = 0 is a step at
    `vmax`. Time-based (Drive Mode bit 2): the move lasts PV ms, accelerating for
    min(PA, PV/2) ms.
    """
    dist = abs(target - start)
    if time_based and pv > 0:
        t3 = pv / 1000.0
        t1 = min(pa, pv / 2.0) / 1000.0
        v_peak = dist / (t3 - t1) if t3 > t1 else 0.0
        kind = 0x10 if t1 == 0 else 0x20 if t1 * 2 >= t3 else 0x30
        return _Profile(start, target, now, t1, t3, v_peak, kind)
    kind_none = pv == 0
    pv = vmax if pv == 0 else min(pv, vmax) if vmax > 0 else pv
    pv = max(pv, 1)
    v = pv / 64.0 * 1000.0  # pulses/s
    if dist == 0:
        return _Profile(start, target, now, 0.0, 0.0, 0.0, 0x00 if kind_none else 0x10)
    if pa == 0 or kind_none:
        t3 = dist / v
        return _Profile(start, target, now, 0.0, t3, v, 0x00 if kind_none else 0x10)
    t1 = 64.0 * pv / pa / 1000.0
    if (pv / 64.0) * (t1 * 1000.0) >= dist:  # triangle
        t3 = 128.0 * math.sqrt(dist / pa) / 1000.0
        v_peak = math.sqrt(pa * dist) / 64.0 * 1000.0
        return _Profile(start, target, now, t3 / 2.0, t3, v_peak, 0x20)
    t3 = t1 + dist / v
    return _Profile(start, target, now, t1, t3, v, 0x30)


class XM430Model:
    """One emulated XM430-W350 on a Protocol 2.0 bus.

    Args:
        motor_id: the servo's ID (EEPROM 7).
        instant: moves complete at once (unit tests); otherwise in real time per the profile.
        clock: monotonic seconds; inject a fake one to step time by hand.
        log: optional path of a JSON-lines write log (appended, one line per logged write).
        baudrate: the servo's baud (sets EEPROM 8; the pty server compares it to the host's).
    """

    def __init__(
        self,
        motor_id: int = 1,
        instant: bool = False,
        clock: Callable[[], float] = time.monotonic,
        log: str | Path | None = None,
        baudrate: int = 57600,
    ) -> None:
        self.instant = instant
        self._clock = clock
        self._lock = threading.RLock()
        self._parser = p.PacketParser()
        self._mem = bytearray(TABLE_SIZE)
        self._born = clock()
        for it in ct.CONTROL_TABLE:
            self._store(it, it.default)
        self._store(ct.item("id"), motor_id)
        self._store(ct.item("baud_rate"), _baud_code(baudrate))
        self._shaft = 0.0  # physical angle in pulses (continuous)
        self._profile: _Profile | None = None
        self._stall = False
        self._stall_limit: float | None = None  # present-frame pulses where a stalled move stops
        self._mute = False
        self._corrupt = False
        self._late = False
        self._silent_until = 0.0
        self._pending_reg: tuple[int, bytes] | None = None
        self._heat = 0.0
        self._last_kind = 0
        self.usb_plugged = True  # the USB adapter in front of the servo (MemoryPort, pty server)
        self.usb_generation = 0
        self.packets = 0  # instruction packets addressed to this servo (incl. broadcast)
        self.bad_packets = 0
        self.replies = 0
        self.writes: list[dict[str, Any]] = []
        self._log_file: TextIO | None = None
        self.log_path = Path(log) if log is not None else None
        if self.log_path is not None:
            self._log_file = self.log_path.open("a", encoding="utf-8", buffering=1)
        self._reset_ram()

    # ------------------------------------------------------------------ public API

    @property
    def motor_id(self) -> int:
        """The current ID (EEPROM 7)."""
        return self._mem[7]

    @property
    def baudrate(self) -> int:
        """The servo's baud rate from EEPROM 8 (bits per second)."""
        return _BAUD_BY_CODE.get(self._mem[8], 57600)

    def feed(self, data: bytes | bytearray) -> list[Reply]:
        """Take bytes from the wire; return the status packets to send (with their delays)."""
        with self._lock:
            replies: list[Reply] = []
            for pkt in self._parser.feed(data):
                if isinstance(pkt, p.BadPacket):
                    self.bad_packets += 1
                    continue
                replies.extend(self.handle(pkt))
            return replies

    def handle(self, pkt: p.Instruction) -> list[Reply]:
        """Execute one decoded instruction; return its status packets (may be none)."""
        with self._lock:
            mine = pkt.motor_id in (self.motor_id, ct.BROADCAST_ID)
            if not mine:
                return []
            now = self._clock()
            if now < self._silent_until or self._mute:
                return []
            self.packets += 1
            answer_id = self.motor_id  # a write to ID (7) still answers from the old ID
            statuses = self._execute(pkt, now)
            if not statuses:
                return []
            delay = 0.0 if self.instant else self._mem[9] * 2e-6
            if self._late:
                delay += LATE_DELAY
            out = [
                Reply(p.build_status(answer_id, err, data, corrupt=self._corrupt), delay)
                for err, data in statuses
            ]
            self.replies += len(out)
            return out

    def inject(self, kind: str) -> None:
        """Inject a fault (see `FAULT_KINDS`).

        Hardware kinds set their bit in Hardware Error Status (70); when the bit is in Shutdown
        (63) torque is cut and motion stops. Every status then carries the alert bit until REBOOT.
        ``stall`` stops the motor partway (Moving stays 1); ``mute`` drops every instruction;
        ``corrupt`` sends replies with a bad CRC; ``late`` sends them after the SDK timeout;
        ``unplug``/``replug`` toggle the USB adapter (`usb_plugged`, `usb_generation`); ``clear``
        removes the comm faults and the stall (hardware errors need REBOOT).

        Raises:
            ValueError: unknown kind.
        """
        with self._lock:
            now = self._clock()
            if kind in HARDWARE_FAULTS:
                bit = HARDWARE_FAULTS[kind]
                self._mem[70] |= bit
                if kind == "overheat":
                    self._heat = 55.0  # Present Temperature above the 80 C limit
                if bit & self._mem[63]:
                    self._torque_off(now)
            elif kind == "stall":
                self._stall = True
                if self._profile is not None and now < self._profile.t0 + self._profile.t3:
                    self._stall_limit = self._profile.at(now)[0]
            elif kind == "mute":
                self._mute = True
            elif kind == "unmute":
                self._mute = False
            elif kind == "corrupt":
                self._corrupt = True
            elif kind == "late":
                self._late = True
            elif kind == "unplug":
                if self.usb_plugged:
                    self.usb_plugged = False
                    self.usb_generation += 1
            elif kind == "replug":
                self.usb_plugged = True
            elif kind == "clear":
                self._mute = self._corrupt = self._late = False
                if self._stall:
                    self._stall = False
                    if self._stall_limit is not None and self._profile is not None:
                        pos = self._stall_limit
                        self._stall_limit = None
                        self._start_move(pos, self._profile.target, now)
            else:
                raise ValueError(f"fault kind {kind!r} is not one of {', '.join(FAULT_KINDS)}")
            _log.info("fault injected: %s", kind)

    def stats(self) -> dict[str, Any]:
        """A snapshot for tests and the control socket."""
        with self._lock:
            now = self._clock()
            self._settle(now)
            pos = self._present(now)
            faults = [k for k, b in HARDWARE_FAULTS.items() if self._mem[70] & b]
            faults += [k for k in COMM_FAULTS if getattr(self, f"_{k}")]
            if self._stall:
                faults.append("stall")
            if not self.usb_plugged:
                faults.append("unplug")
            return {
                "motor_id": self.motor_id,
                "packets": self.packets,
                "bad_packets": self.bad_packets,
                "replies": self.replies,
                "writes": len(self.writes),
                "position": round(pos),
                "position_deg": ct.ticks_to_degrees(round(pos)),
                "shaft_deg": (self._shaft * ct.DEGREES_PER_PULSE) % 360.0,
                "goal_position": self._get("goal_position"),
                "moving": bool(self._moving(now)),
                "torque": bool(self._mem[64]),
                "hardware_error": self._mem[70],
                "faults": faults,
                "baud": self.baudrate,
                "silent": now < self._silent_until,
            }

    def read_item(self, name: str) -> int:
        """The current value of a control-table item (signed where the item is)."""
        with self._lock:
            self._refresh(self._clock())
            return self._get(name)

    def close(self) -> None:
        """Close the write log."""
        with self._lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    # ------------------------------------------------------------------ table storage

    def _store(self, it: ct.Item, value: int) -> None:
        self._mem[it.address : it.address + it.size] = (
            value & ((1 << (8 * it.size)) - 1)
        ).to_bytes(it.size, "little")

    def _get(self, name: str) -> int:
        it = ct.item(name)
        raw = int.from_bytes(self._mem[it.address : it.address + it.size], "little")
        return ct.to_signed(raw, it.size) if it.signed else raw

    def _reset_ram(self) -> None:
        for it in ct.CONTROL_TABLE:
            if not it.eeprom:
                self._store(it, it.default)
        self._store(ct.item("goal_pwm"), self._get("pwm_limit"))
        self._store(ct.item("goal_current"), self._get("current_limit"))
        self._profile = None
        self._stall_limit = None
        self._pending_reg = None
        self._heat = 0.0
        self._absolute_position()
        self._store(ct.item("goal_position"), round(self._present_static()))

    # ------------------------------------------------------------------ position frames

    def _sign(self) -> int:
        return -1 if self._mem[10] & 0x01 else 1

    def _present_static(self) -> float:
        return self._sign() * self._shaft + self._get("homing_offset")

    def _set_present(self, present: float) -> None:
        self._shaft = (present - self._get("homing_offset")) * self._sign()

    def _absolute_position(self) -> None:
        """Present Position becomes single-turn absolute (power-on, reboot, torque-on in mode 3)."""
        actual = self._sign() * self._shaft
        self._shaft = self._sign() * (actual % ct.PULSES_PER_REV)

    # ------------------------------------------------------------------ motion

    def _present(self, now: float) -> float:
        prof = self._profile
        if prof is None:
            return self._present_static()
        pos, _ = prof.at(now)
        if self._stall_limit is not None:
            pos = self._clamp_stall(prof, pos)
        return pos

    def _clamp_stall(self, prof: _Profile, pos: float) -> float:
        assert self._stall_limit is not None
        if prof.target >= prof.start:
            return min(pos, self._stall_limit)
        return max(pos, self._stall_limit)

    def _velocity(self, now: float) -> float:
        prof = self._profile
        if prof is None:
            return 0.0
        pos, vel = prof.at(now)
        if self._stall_limit is not None and self._clamp_stall(prof, pos) != pos:
            return 0.0
        return vel

    def _stalled_now(self, now: float) -> bool:
        prof = self._profile
        if prof is None or self._stall_limit is None:
            return False
        pos = prof.at(now)[0]
        return self._clamp_stall(prof, pos) != pos or now >= prof.t0 + prof.t3

    def _moving(self, now: float) -> int:
        prof = self._profile
        if prof is None:
            return 0
        if self._stall_limit is not None:
            return 1
        return int(now < prof.t0 + prof.t3)

    def _settle(self, now: float) -> None:
        """Fold a finished (unstalled) profile into the static position."""
        prof = self._profile
        if prof is not None and self._stall_limit is None and now >= prof.t0 + prof.t3:
            self._set_present(prof.target)
            self._last_kind = prof.kind
            self._profile = None

    def _start_move(self, start: float, target: float, now: float) -> None:
        vmax = self._get("velocity_limit") or 200
        pv, pa = self._get("profile_velocity"), self._get("profile_acceleration")
        time_based = bool(self._mem[10] & 0x04)
        prof = plan_profile(start, float(target), pv, pa, now, vmax, time_based)
        if self.instant:
            prof.t1 = prof.t3 = 0.0
        self._stall_limit = start + STALL_FRACTION * (target - start) if self._stall else None
        self._profile = prof
        self._last_kind = prof.kind

    def _freeze(self, now: float) -> None:
        """Stop where the motor is now (torque off, fault)."""
        pos = self._present(now)
        self._set_present(pos)
        self._profile = None
        self._stall_limit = None

    def _torque_off(self, now: float) -> None:
        self._freeze(now)
        self._mem[64] = 0

    def _refresh(self, now: float) -> None:
        """Write the computed items (120..146) into the table."""
        self._settle(now)
        pos = self._present(now)
        vel = self._velocity(now)  # pulses/s
        moving = self._moving(now)
        torque = self._mem[64]
        prof = self._profile
        vel_units = round(vel / 1000.0 * 64.0)
        if not torque:
            current = 0
        elif self._stall_limit is not None and self._stalled_now(now):
            current = 900 if (prof is not None and prof.target >= prof.start) else -900
        elif moving:
            acc = 0.0
            if prof is not None and prof.t1 > 0:
                t = now - prof.t0
                if t < prof.t1:
                    acc = 1.0
                elif t > prof.t3 - prof.t1:
                    acc = -1.0
            direction = 1 if vel >= 0 else -1
            current = direction * (60 + round(40 * acc))
        else:
            current = 4
        status = self._last_kind
        if prof is not None and now < prof.t0 + prof.t3:
            status |= ct.MOVING_STATUS_PROFILE_ONGOING
        if self._stall_limit is not None:
            status |= ct.MOVING_STATUS_FOLLOWING_ERROR
        elif not moving and abs(pos - self._get("goal_position")) < 1:
            status |= ct.MOVING_STATUS_IN_POSITION
        traj_pos, traj_vel = prof.at(now) if prof is not None else (pos, 0.0)
        temp = 32 + (1 if torque else 0) + (2 if moving else 0) + self._heat
        volts = 120 - (1 if moving else 0)
        if self._mem[70] & HARDWARE_FAULTS["voltage"]:
            volts = 89
        self._store(ct.item("realtime_tick"), int((now - self._born) * 1000) % 32768)
        self._store(ct.item("moving"), moving)
        self._store(ct.item("moving_status"), status)
        self._store(ct.item("present_pwm"), round(current * 0.5))
        self._store(ct.item("present_current"), current)
        self._store(ct.item("present_velocity"), vel_units)
        self._store(ct.item("present_position"), round(pos))
        self._store(ct.item("velocity_trajectory"), round(traj_vel / 1000.0 * 64.0))
        self._store(ct.item("position_trajectory"), round(traj_pos))
        self._store(ct.item("present_input_voltage"), volts)
        self._store(ct.item("present_temperature"), int(min(temp, 120)))

    # ------------------------------------------------------------------ instructions

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
                return status(_ERR_LENGTH, level=1)
            addr, length = _u16(prm, 0), _u16(prm, 2)
            err, data = self._read(addr, length, now)
            return status(err, data, level=1)
        if inst in (p.INST_WRITE, p.INST_REG_WRITE):
            if len(prm) < 3:
                return status(_ERR_LENGTH)
            addr, data = _u16(prm, 0), prm[2:]
            err = self._check_write(addr, data, now)
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
            if not self._check_write(addr, data, now):
                self._apply_write(addr, data, now)
            return []
        if inst == p.INST_REBOOT:
            out = status(0)
            self._reboot(now)
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
                    if not self._check_write(addr, data, now):
                        self._apply_write(addr, data, now)
            return []
        if inst == p.INST_CLEAR:
            return status(0)
        if inst == p.INST_FACTORY_RESET:
            if self._mem[64]:
                return status(_ERR_ACCESS)
            out = status(0)
            keep_id, keep_baud = self._mem[7], self._mem[8]
            option = prm[0] if prm else 0xFF
            for it in ct.CONTROL_TABLE:
                if it.eeprom:
                    self._store(it, it.default)
            if option in (0x01, 0x02):
                self._mem[7] = keep_id
            if option == 0x02:
                self._mem[8] = keep_baud
            self._reboot(now)
            return out
        return status(_ERR_INSTRUCTION)

    def _read(self, addr: int, length: int, now: float) -> tuple[int, bytes]:
        if addr + length > TABLE_SIZE:
            return _ERR_ACCESS, b""
        if addr <= _DYNAMIC_LAST + 1 and addr + length > _DYNAMIC_FIRST:
            self._refresh(now)
        return 0, bytes(self._mem[addr : addr + length])

    def _items_in(self, addr: int, data: bytes) -> list[tuple[ct.Item, int]] | int:
        """Split a write into (item, value) pairs, or return the error number."""
        end = addr + len(data)
        first = ct.ITEMS_BY_ADDRESS.get(addr)
        if first is None:
            for it in ct.CONTROL_TABLE:
                if it.address < addr < it.address + it.size:
                    return _ERR_LENGTH if it.access == "RW" else _ERR_ACCESS
            return _ERR_ACCESS
        out: list[tuple[ct.Item, int]] = []
        for it in ct.CONTROL_TABLE:
            if it.address + it.size <= addr or it.address >= end:
                continue
            if it.address + it.size > end:
                return _ERR_LENGTH if it.access == "RW" else _ERR_ACCESS
            raw = int.from_bytes(data[it.address - addr : it.address - addr + it.size], "little")
            out.append((it, ct.to_signed(raw, it.size) if it.signed else raw))
        return out

    def _check_write(self, addr: int, data: bytes, now: float) -> int:
        items = self._items_in(addr, data)
        if isinstance(items, int):
            return items
        torque = self._mem[64]
        for it, _ in items:
            if it.access != "RW" or (it.eeprom and torque):
                return _ERR_ACCESS
        for it, value in items:
            lo, hi = it.minimum, it.maximum
            if lo is not None and hi is not None and not lo <= value <= hi:
                return _ERR_RANGE
            if it.name == "goal_position" and self._mem[11] == ct.MODE_POSITION:
                lo, hi = self._get("min_position_limit"), self._get("max_position_limit")
                if not lo <= value <= hi:
                    return _ERR_RANGE
        return 0

    def _apply_write(self, addr: int, data: bytes, now: float) -> None:
        items = self._items_in(addr, data)
        assert not isinstance(items, int)
        for it, value in items:
            self._log_write(it, value, now)
            old = self._get(it.name)
            self._store(it, value)
            self._after_write(it.name, value, old, now)

    def _after_write(self, name: str, value: int, old: int, now: float) -> None:
        if name == "torque_enable":
            if value and not old:
                if self._mem[70] & self._mem[63]:
                    self._mem[64] = 0  # torque stays off until REBOOT
                    return
                self._freeze(now)
                if self._mem[11] == ct.MODE_POSITION:
                    self._absolute_position()
                # holding position: the goal becomes the present position
                self._store(ct.item("goal_position"), round(self._present_static()))
            elif not value:
                self._freeze(now)
        elif name == "goal_position":
            if self._mem[64]:
                self._settle(now)
                start = self._present(now)
                self._set_present(start)
                self._start_move(start, value, now)
        elif name == "operating_mode":
            self._store(ct.item("profile_velocity"), 0)
            self._store(ct.item("profile_acceleration"), 0)
            self._store(ct.item("goal_pwm"), self._get("pwm_limit"))
            self._store(ct.item("goal_current"), self._get("current_limit"))
            if value == ct.MODE_POSITION:
                self._absolute_position()

    def _reboot(self, now: float) -> None:
        self._log_entry(
            {"addr": None, "name": "reboot", "value": None, "moving": bool(self._moving(now))}
        )
        self._freeze(now)
        self._mem[70] = 0
        self._reset_ram()
        self._silent_until = now + (REBOOT_SILENCE_INSTANT if self.instant else REBOOT_SILENCE)

    # ------------------------------------------------------------------ write log

    def _log_write(self, it: ct.Item, value: int, now: float) -> None:
        if it.name in LOGGED_ITEMS:
            moving = bool(self._moving(now))
            self._log_entry({"addr": it.address, "name": it.name, "value": value, "moving": moving})

    def _log_entry(self, entry: dict[str, Any]) -> None:
        record = {"t": time.time(), "motor_id": self.motor_id, **entry}
        self.writes.append(record)
        if self._log_file is not None:
            self._log_file.write(json.dumps(record) + "\n")


_BAUD_BY_CODE = {0: 9600, 1: 57600, 2: 115200, 3: 1000000, 4: 2000000, 5: 3000000, 6: 4000000}
_BAUD_BY_CODE[7] = 4500000


def _baud_code(baudrate: int) -> int:
    for code, rate in _BAUD_BY_CODE.items():
        if rate == baudrate:
            return code
    raise ValueError(
        f"baudrate {baudrate} is not an XM430 rate ({', '.join(map(str, _BAUD_BY_CODE.values()))})"
    )


def _u16(data: bytes, i: int) -> int:
    return data[i] | (data[i + 1] << 8)
