"""The XM430-W350 model: control table, Protocol 2.0 instructions, faults, bus watchdog, write log.

Transport-free: `XM430Model.feed(bytes)` returns the status packets to send and when. The in-memory
wire (`MemoryPort`) and the pty server both sit on top of it. The motion lives in `physics`, the
table's bytes and write validation in `table`. Facts from ``../shared/reference/dynamixel.md``
(cited below as "ref N.N").

The model is meant to be at least as strict as the real servo where safety is concerned. Where the
e-manual is silent or vague, it takes the stricter reading; each such choice is listed here with
its source, or marked *assumption*:

* Power-on, REBOOT and the ``power-cycle`` fault (servo supply lost and back while the USB link
  stays up; ref 6.5, 8.4) reset RAM to its defaults: torque off, Profile Velocity/Acceleration 0,
  Bus Watchdog 0, LED 0, Hardware Error Status 0, Goal PWM/Current at PWM/Current Limit. The shaft
  stops where it is, the multi-turn count is lost (Present Position single-turn absolute, 0..4095 +
  Homing Offset), Realtime Tick restarts at 0 (ref 8.4; after REBOOT too: *assumption*, it is the
  same boot), and nothing is answered for `REBOOT_SILENCE` (ref 3.3: ~0.4 s measured on an XC330).
  A power cycle is modelled as an instant drop and return followed by that boot (*assumption*).
  EEPROM is kept.
* Goal Position reads 0 after power-on, REBOOT and a power cycle (*assumption*: ref 8.3/8.4 say it
  is undefined; 0 makes a driver that enables torque without first writing goal = present move
  visibly).
* Torque-on never copies Present Position into Goal Position (*assumption*, ref 8.3: what the goal
  holds at torque-on is undocumented): the servo drives to whatever Goal Position holds, with the
  current profile, in mode 3 after the single-turn re-frame and clamped into Min/Max Position Limit
  (*assumption*).
* Startup Configuration (60) bit 0 turns torque on when the boot ends (ref 8.4), by the rule above,
  so towards Goal Position 0 (*assumption*: the strict reading; a driver keeps bit 0 clear).
  Bit 1 (restore the RAM backup) is not modelled: RAM always boots at its defaults (*assumption*).
* Drive Mode (10) accepts only the bits in 0x0D and Operating Mode (11) only 0, 1, 3, 4, 5, 16;
  anything else answers Data Range Error (ref 3.1/8.2; the error number is an *assumption*).
  Drive Mode bit 3 (fw >= 45, ref 8.2): a write of the mode's goal item (Goal Position in modes
  3/4/5) while torque is off turns torque on, unless an error in the Shutdown mask is latched, and
  executes it.
* Min/Max Position Limit apply in mode 3 only; a goal outside them answers Data Range Error (ref
  8.5/8.6; 0x04 rather than 0x06 is an *assumption*, ref 7). In modes 4 and 5 Goal Position may be
  +-1,048,575 and Present Position counts turns; it is re-framed to one turn only by a change to
  mode 3, torque-on in mode 3, power-on and REBOOT (ref 3.2 notes, 8.3).
* Mode 5 (current-based position, ref 8.5): moves follow the same velocity-based profile as mode
  3, and the output is capped by |Goal Current|: Present Current never exceeds it. A Goal Current
  below what the profile needs (`physics.Profile.peak_current`: the model's 100 units with an
  acceleration ramp, 60 without; checked when a move starts and when Goal Current is written
  during one: *assumption*) cannot move the shaft, which is then treated exactly like a jam.
  Modes 0, 1 and 16 are accepted but their physics is not modelled: torque holds the shaft.
* ``jam`` (ref 8.5): the shaft stops where it is (a move under way stops at once; at rest, the
  next move cannot leave its start) while the goal stays pending: Moving 1, Present Velocity 0,
  Moving Status following error (0x08) and not in position, Present Current at the cap in the
  direction of travel: |Goal Current| in mode 5, Current Limit in modes 3/4 (the stall current:
  *assumption*). A jam held above 50 % of Current Limit (*assumption*) for `JAM_OVERLOAD_SECONDS`
  trips Overload (70 bit 0x20), which with the default Shutdown cuts torque. ROBOTIS says "a few
  seconds" of high current (DynamixelSDK #285) and one report saw ~5 s at ~940 mA in mode 3 (ref
  8.5); 3.0 s is the stricter choice (*assumption*). The trip time counts from when the jam began
  pushing, whenever someone looks. ``clear`` frees the shaft: it carries on to its goal, re-planned
  from rest where it stood. ``stall`` is the soft version: the move stops 40 % of the way, at 900
  units, and never trips Overload (*assumption*, kept for following-error tests).
* Bus Watchdog (98, ref 8.1): 1..127 arm it in 20 ms units; it counts only while torque is on, and
  every instruction packet the servo receives for its ID or broadcast restarts it (packets lost to
  ``mute``, the boot silence, a baud mismatch or a bad CRC do not: *assumption*, the servo never
  saw them). On expiry the servo stops abruptly where the shaft is at that instant, keeps torque on
  and holds (ref 8.1: "reports say"), 98 reads -1, and writes to Goal PWM/Current/Velocity/Position
  answer Data Range Error until 98 is written 0; writing another value while expired answers Data
  Range Error too (*assumption*).
* Timed events (watchdog expiry, jam overload, end of boot) are evaluated lazily, in time order, at
  every instruction, `inject`, `read_item` and `stats`, each at the instant it happened: a pty
  emulator whose host died mid-move shows the motor stopped whenever it is asked.
* Addresses: a write must start at an item (else Access Error; inside a writable item, Data
  Length Error as for a partial item). A read must start at an item or inside the Indirect
  Address/Data areas, else Access Error (*assumption*); a read starting at an item may span
  reserved bytes, which read 0 (*assumption*: tools such as Dynamixel Wizard read the table in
  blocks). Indirect addressing itself is not modelled (the data reads 0).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from device_agent import control_table as ct
from device_agent.emulator import protocol as p
from device_agent.emulator.physics import (
    HOLD_CURRENT,
    STALL_CURRENT,
    Block,
    Motion,
    plan_profile,
)
from device_agent.emulator.table import (
    ERR_ACCESS,
    ERR_INSTRUCTION,
    ERR_LENGTH,
    TABLE_SIZE,
    ControlTable,
)

__all__ = [
    "FAULT_KINDS",
    "HARDWARE_FAULTS",
    "JAM_OVERLOAD_SECONDS",
    "LOGGED_ITEMS",
    "REBOOT_SILENCE",
    "REBOOT_SILENCE_INSTANT",
    "TABLE_SIZE",
    "Reply",
    "XM430Model",
    "plan_profile",
]

_log = logging.getLogger(__name__)

REBOOT_SILENCE = 0.4  # s without replies after REBOOT or a power cycle (ref 3.3, XC330)
REBOOT_SILENCE_INSTANT = 0.05
LATE_DELAY = 0.060  # s: after the SDK's ~34-37 ms status timeout
JAM_OVERLOAD_SECONDS = 3.0  # a jam held at high current trips Overload after this (ref 8.5)

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

# Items whose writes go to the write log.
LOGGED_ITEMS = frozenset(
    {
        "goal_position",
        "goal_current",
        "torque_enable",
        "profile_velocity",
        "profile_acceleration",
        "operating_mode",
        "drive_mode",
        "shutdown",
        "bus_watchdog",
    }
)

_DYNAMIC_FIRST = 120  # realtime tick .. present temperature are computed on read
_DYNAMIC_LAST = 146
_OVERLOAD = HARDWARE_FAULTS["overload"]
_POSITION_MODES = (ct.MODE_POSITION, ct.MODE_EXTENDED_POSITION, ct.MODE_CURRENT_POSITION)
# The item a goal write in each mode targets (Drive Mode bit 3 turns torque on by writing it).
_MODE_GOAL = {
    ct.MODE_CURRENT: "goal_current",
    ct.MODE_VELOCITY: "goal_velocity",
    ct.MODE_POSITION: "goal_position",
    ct.MODE_EXTENDED_POSITION: "goal_position",
    ct.MODE_CURRENT_POSITION: "goal_position",
    ct.MODE_PWM: "goal_pwm",
}


@dataclass(frozen=True, slots=True)
class Reply:
    """A status packet to put on the wire `delay` seconds after the instruction arrived."""

    data: bytes
    delay: float = 0.0


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
        self._table = ControlTable()
        self._mem = self._table.mem
        now = clock()
        self._born = now  # Realtime Tick counts from here (power-on)
        self._set("id", motor_id)
        self._set("baud_rate", _baud_code(baudrate))
        self._motion = Motion(lambda: (self._sign(), self._get("homing_offset")))
        self._stall = False
        self._jam = False
        self._need = 0  # current the running profile needs (mode 5's cap check)
        self._overload_from: float | None = None  # a jam has pushed hard since then
        self._fed = now  # last instruction packet received: the bus watchdog counts from here
        self._boot_at: float | None = None  # end of a boot that turns torque on (Startup Config)
        self._mute = False
        self._corrupt = False
        self._late = False
        self._silent_until = 0.0
        self._pending_reg: tuple[int, bytes] | None = None
        self._heat = 0.0
        self.last_profile: dict[str, int] | None = None
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
            self._advance(now)
            if now < self._silent_until or self._mute:
                return []
            self.packets += 1
            self._fed = now  # every packet received for this servo restarts the bus watchdog
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
        ``stall`` stops the motor partway (Moving stays 1); ``jam`` stops it where it is and, held
        at high current, trips Overload after `JAM_OVERLOAD_SECONDS`; ``power-cycle`` drops and
        restores the servo's supply (RAM to power-on defaults, boot silence); ``mute`` drops every
        instruction; ``corrupt`` sends replies with a bad CRC; ``late`` sends them after the SDK
        timeout; ``unplug``/``replug`` toggle the USB adapter (`usb_plugged`, `usb_generation`);
        ``clear`` removes the comm faults, the stall and the jam (hardware errors need REBOOT).

        Raises:
            ValueError: unknown kind.
        """
        with self._lock:
            now = self._clock()
            self._advance(now)
            motion = self._motion
            if kind in HARDWARE_FAULTS:
                if kind == "overheat":
                    self._heat = 55.0  # Present Temperature above the 80 C limit
                self._raise_hardware(HARDWARE_FAULTS[kind], now)
            elif kind == "stall":
                self._stall = True
                if motion.block is None:
                    motion.hold_here(now, "stall")
            elif kind == "jam":
                self._jam = True
                motion.hold_here(now, "jam")
                self._update_overload(now)
            elif kind == "power-cycle":
                self._log_entry(self._event_entry("power-cycle", now))
                self._power_on(now)
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
                self._stall = self._jam = False
                self._free(now)
            else:
                raise ValueError(f"fault kind {kind!r} is not one of {', '.join(FAULT_KINDS)}")
            _log.info("fault injected: %s", kind)

    def stats(self) -> dict[str, Any]:
        """A snapshot for tests and the control socket (JSON-serialisable).

        Timed events due by now (watchdog expiry, jam overload, end of boot) are applied first.
        ``last_profile`` is ``{"velocity", "acceleration", "kind"}`` (Profile Velocity and
        Acceleration register values, Moving Status profile-type bits) of the most recent move
        start: a goal write, a torque-on that drives to Goal Position, or a held move set off
        again (``clear``, a raised Goal Current); None before any.
        """
        with self._lock:
            now = self._clock()
            self._advance(now)
            self._refresh(now)
            pos = self._motion.present(now)
            faults = [k for k, b in HARDWARE_FAULTS.items() if self._mem[70] & b]
            faults += [k for k in COMM_FAULTS if getattr(self, f"_{k}")]
            if self._stall:
                faults.append("stall")
            if self._jam:
                faults.append("jam")
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
                "shaft_deg": (self._motion.shaft * ct.DEGREES_PER_PULSE) % 360.0,
                "goal_position": self._get("goal_position"),
                "moving": self._motion.moving(now),
                "torque": bool(self._mem[64]),
                "hardware_error": self._mem[70],
                "faults": faults,
                "baud": self.baudrate,
                "silent": now < self._silent_until,
                "operating_mode": self._mem[11],
                "profile_velocity": self._get("profile_velocity"),
                "profile_acceleration": self._get("profile_acceleration"),
                "goal_current": self._get("goal_current"),
                "present_current": self._get("present_current"),
                "bus_watchdog": self._get("bus_watchdog"),
                "led": self._mem[65],
                "last_profile": dict(self.last_profile) if self.last_profile else None,
            }

    def read_item(self, name: str) -> int:
        """The current value of a control-table item (signed where the item is)."""
        with self._lock:
            now = self._clock()
            self._advance(now)
            self._refresh(now)
            return self._get(name)

    def close(self) -> None:
        """Close the write log."""
        with self._lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    # ------------------------------------------------------------------ table and RAM

    def _get(self, name: str) -> int:
        return self._table.get(name)

    def _set(self, name: str, value: int) -> None:
        self._table.set(name, value)

    def _sign(self) -> int:
        return -1 if self._mem[10] & ct.DRIVE_MODE_REVERSE else 1

    def _reset_ram(self) -> None:
        """RAM to its power-on defaults (motor at rest); Present Position single-turn."""
        self._table.reset_ram()
        self._set("goal_pwm", self._get("pwm_limit"))
        self._set("goal_current", self._get("current_limit"))
        self._overload_from = None
        self._pending_reg = None
        self._heat = 0.0
        self._motion.reframe()

    # ------------------------------------------------------------------ timed events

    def _advance(self, now: float) -> None:
        """Apply, in time order and each at its own instant, the events due by `now`."""
        while True:
            due: list[tuple[float, Callable[[float], None]]] = []
            deadline = self._watchdog_deadline()
            if deadline is not None:
                due.append((deadline, self._expire_watchdog))
            if self._overload_from is not None:
                due.append((self._overload_from + JAM_OVERLOAD_SECONDS, self._trip_overload))
            if self._boot_at is not None:
                due.append((self._boot_at, self._boot))
            due = [event for event in due if event[0] <= now]
            if not due:
                return
            when, action = min(due, key=lambda event: event[0])
            action(when)

    def _watchdog_deadline(self) -> float | None:
        armed = self._get("bus_watchdog")
        if armed <= 0 or not self._mem[64]:
            return None
        return self._fed + armed * ct.BUS_WATCHDOG_UNIT

    def _expire_watchdog(self, when: float) -> None:
        self._motion.stop(when)  # abrupt: where the shaft is at the expiry instant
        self._overload_from = None
        self._set("bus_watchdog", ct.BUS_WATCHDOG_EXPIRED)
        _log.info("bus watchdog expired")

    def _trip_overload(self, when: float) -> None:
        self._overload_from = None
        self._raise_hardware(_OVERLOAD, when)
        _log.info("jam held too long: overload")

    def _boot(self, when: float) -> None:
        self._boot_at = None
        if self._mem[60] & ct.STARTUP_TORQUE_ON:
            self._torque_on(when)

    # ------------------------------------------------------------------ motion and current

    def _start_move(self, start: float, target: float, now: float) -> None:
        vmax = self._get("velocity_limit") or 200
        pv, pa = self._get("profile_velocity"), self._get("profile_acceleration")
        time_based = bool(self._mem[10] & ct.DRIVE_MODE_TIME_BASED)
        prof = plan_profile(start, float(target), pv, pa, now, vmax, time_based)
        self._need = prof.peak_current
        if self.instant:
            prof.t1 = prof.t3 = 0.0
        capped = self._mem[11] == ct.MODE_CURRENT_POSITION
        block: Block | None
        if self._jam:
            block = "jam"
        elif capped and abs(self._get("goal_current")) < self._need:
            block = "cap"
        elif self._stall:
            block = "stall"
        else:
            block = None
        self._motion.start(prof, block)
        self.last_profile = {"velocity": pv, "acceleration": pa, "kind": prof.kind}
        self._update_overload(now)

    def _free(self, now: float) -> None:
        """The obstruction is gone: a held move carries on, re-planned from rest where it is."""
        motion, prof = self._motion, self._motion.profile
        if prof is None or motion.block not in ("stall", "jam"):
            return
        if motion.held(now):
            self._start_move(motion.present(now), prof.target, now)
        else:
            motion.limit = motion.block = None
        self._update_overload(now)

    def _present_current(self, now: float) -> int:
        """Present Current (signed units): capped by |Goal Current| in mode 5."""
        if not self._mem[64]:
            return 0
        motion, prof = self._motion, self._motion.profile
        direction = 1
        if prof is not None and motion.held(now):
            direction = prof.direction
            magnitude = STALL_CURRENT if motion.block == "stall" else self._get("current_limit")
        elif prof is not None and motion.moving(now):
            direction = prof.direction
            magnitude = motion.drive_current(now)
        else:
            magnitude = HOLD_CURRENT
        if self._mem[11] == ct.MODE_CURRENT_POSITION:
            magnitude = min(magnitude, abs(self._get("goal_current")))
        return direction * magnitude

    def _update_overload(self, now: float) -> None:
        """Start (or keep) the overload clock while a jam pushes above half the Current Limit."""
        motion = self._motion
        hard = (
            motion.block in ("jam", "cap")
            and motion.held(now)
            and self._mem[64]
            and not self._mem[70] & _OVERLOAD
        )
        if hard and 2 * abs(self._present_current(now)) > self._get("current_limit"):
            if self._overload_from is None:
                self._overload_from = now
        else:
            self._overload_from = None

    def _torque_on(self, now: float) -> None:
        """Torque on (refused while a Shutdown error is latched); drive to Goal Position."""
        if self._mem[70] & self._mem[63]:
            self._mem[64] = 0  # torque stays off until REBOOT
            return
        motion = self._motion
        motion.stop(now)
        self._mem[64] = 1
        self._fed = now
        mode = self._mem[11]
        if mode == ct.MODE_POSITION:
            motion.reframe()
        if mode not in _POSITION_MODES:
            return
        goal = self._get("goal_position")
        if mode == ct.MODE_POSITION:
            lo, hi = self._get("min_position_limit"), self._get("max_position_limit")
            goal = max(lo, min(hi, goal))
        if round(motion.static()) != goal:
            self._start_move(motion.static(), goal, now)

    def _torque_off(self, now: float) -> None:
        self._motion.stop(now)
        self._overload_from = None
        self._mem[64] = 0

    def _raise_hardware(self, bit: int, now: float) -> None:
        self._mem[70] |= bit
        if bit & self._mem[63]:
            self._torque_off(now)

    def _refresh(self, now: float) -> None:
        """Write the computed items (120..146) into the table."""
        motion = self._motion
        motion.settle(now)
        pos = motion.present(now)
        vel = motion.velocity(now)  # pulses/s
        moving = motion.moving(now)
        current = self._present_current(now)
        prof = motion.profile
        status = motion.last_kind
        if prof is not None and now < prof.end:
            status |= ct.MOVING_STATUS_PROFILE_ONGOING
        if motion.limit is not None:
            status |= ct.MOVING_STATUS_FOLLOWING_ERROR
        elif not moving and abs(pos - self._get("goal_position")) < 1:
            status |= ct.MOVING_STATUS_IN_POSITION
        traj_pos, traj_vel = prof.at(now) if prof is not None else (pos, 0.0)
        temp = 32 + (1 if self._mem[64] else 0) + (2 if moving else 0) + self._heat
        volts = 120 - (1 if moving else 0)
        if self._mem[70] & HARDWARE_FAULTS["voltage"]:
            volts = 89
        self._set("realtime_tick", int((now - self._born) * 1000) % 32768)
        self._set("moving", int(moving))
        self._set("moving_status", status)
        self._set("present_pwm", round(current * 0.5))
        self._set("present_current", current)
        self._set("present_velocity", round(vel / 1000.0 * 64.0))
        self._set("present_position", round(pos))
        self._set("velocity_trajectory", round(traj_vel / 1000.0 * 64.0))
        self._set("position_trajectory", round(traj_pos))
        self._set("present_input_voltage", volts)
        self._set("present_temperature", int(min(temp, 120)))

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
            self._log_entry(self._event_entry("reboot", now))
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
            self._log_entry(self._event_entry("reboot", now))
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
            self._log_write(it, value, now)
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
        elif name == "goal_position" and self._mem[64] and mode in _POSITION_MODES:
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

    def _power_on(self, now: float) -> None:
        """Boot: REBOOT, FACTORY_RESET and a power cycle. EEPROM is kept, RAM reset."""
        self._torque_off(now)
        self._mem[70] = 0
        self._reset_ram()
        self._born = now
        self._silent_until = now + (REBOOT_SILENCE_INSTANT if self.instant else REBOOT_SILENCE)
        startup = self._mem[60] & ct.STARTUP_TORQUE_ON
        self._boot_at = self._silent_until if startup else None

    # ------------------------------------------------------------------ write log

    def _event_entry(self, name: str, now: float) -> dict[str, Any]:
        return {"addr": None, "name": name, "value": None, "moving": self._motion.moving(now)}

    def _log_write(self, it: ct.Item, value: int, now: float) -> None:
        if it.name in LOGGED_ITEMS:
            moving = self._motion.moving(now)
            torque = bool(self._mem[64])  # before the write: a goal written with torque off moves
            entry = {"addr": it.address, "name": it.name, "value": value, "moving": moving}
            self._log_entry({**entry, "torque": torque})

    def _log_entry(self, entry: dict[str, Any]) -> None:
        record = {"t": time.time(), "motor_id": self.motor_id, **entry}
        self.writes.append(record)
        if self._log_file is not None:
            self._log_file.write(json.dumps(record) + "\n")


_BAUD_BY_CODE = {code: rate for rate, code in ct.XM430_BAUD_CODES.items()}


def _baud_code(baudrate: int) -> int:
    for code, rate in _BAUD_BY_CODE.items():
        if rate == baudrate:
            return code
    raise ValueError(
        f"baudrate {baudrate} is not an XM430 rate ({', '.join(map(str, _BAUD_BY_CODE.values()))})"
    )


def _u16(data: bytes, i: int) -> int:
    return data[i] | (data[i + 1] << 8)
