"""The emulated servo's state and what it does by itself: torque, motion, current, boot, timers.

`Servo` holds the control table (`table.ControlTable`), the shaft (`physics.Motion`), the
injected faults (`faults.FaultFlags`) and the write log (`write_log.WriteLog`), and applies the
rules that no instruction triggers directly: torque on and off, a move's start and what holds it
back, Present Current, the timed events (bus watchdog expiry, a jam tripping Overload, the end of
a boot) and power-on. The assumptions behind each rule are listed in `device_agent.emulator.model`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

from device_agent import control_table as ct
from device_agent.emulator import protocol as p
from device_agent.emulator.faults import HARDWARE_FAULTS, FaultFlags
from device_agent.emulator.physics import (
    HOLD_CURRENT,
    STALL_CURRENT,
    Block,
    Motion,
    plan_profile,
)
from device_agent.emulator.table import ControlTable
from device_agent.emulator.write_log import WriteLog

__all__ = [
    "JAM_OVERLOAD_SECONDS",
    "POSITION_MODES",
    "REBOOT_SILENCE",
    "REBOOT_SILENCE_INSTANT",
    "Servo",
]

_log = logging.getLogger(__name__)

REBOOT_SILENCE = 0.4  # s without replies after REBOOT or a power cycle (measured on an XC330)
REBOOT_SILENCE_INSTANT = 0.05
JAM_OVERLOAD_SECONDS = 3.0  # a jam held at high current trips Overload after this
POSITION_MODES = (ct.MODE_POSITION, ct.MODE_EXTENDED_POSITION, ct.MODE_CURRENT_POSITION)

_OVERLOAD = HARDWARE_FAULTS["overload"]
_BAUD_BY_CODE = MappingProxyType({code: rate for rate, code in ct.XM430_BAUD_CODES.items()})


class Servo:
    """One XM430-W350's state and its own behaviour (Args: see `XM430Model`)."""

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
        self._table = ControlTable()
        self._mem = self._table.mem
        now = clock()
        self._born = now  # Realtime Tick counts from here (power-on)
        self._set("id", motor_id)
        self._set("baud_rate", _baud_code(baudrate))
        self._motion = Motion(lambda: (self._sign(), self._get("homing_offset")))
        self._faults = FaultFlags()
        self._need = 0  # current the running profile needs (mode 5's cap check)
        self._overload_from: float | None = None  # a jam has pushed hard since then
        self._fed = now  # last instruction packet received: the bus watchdog counts from here
        self._boot_at: float | None = None  # end of a boot that turns torque on (Startup Config)
        self._silent_until = 0.0
        self._pending_reg: tuple[int, bytes] | None = None
        self._heat = 0.0
        self.last_profile: dict[str, int] | None = None
        self._write_log = WriteLog(log)
        self._reset_ram()
        # The wire side, used by `XM430Model`:
        self._lock = threading.RLock()
        self._parser = p.PacketParser()
        self.usb_plugged = True  # the USB adapter in front of the servo (MemoryPort, pty server)
        self.usb_generation = 0
        self.packets = 0  # instruction packets addressed to this servo (incl. broadcast)
        self.bad_packets = 0
        self.replies = 0

    @property
    def motor_id(self) -> int:
        """The current ID (EEPROM 7)."""
        return self._mem[7]

    @property
    def baudrate(self) -> int:
        """The servo's baud rate from EEPROM 8 (bits per second)."""
        return _BAUD_BY_CODE.get(self._mem[8], 57600)

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
        if self._faults.jam:
            block = "jam"
        elif capped and abs(self._get("goal_current")) < self._need:
            block = "cap"
        elif self._faults.stall:
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
        if mode not in POSITION_MODES:
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

    def _power_on(self, now: float) -> None:
        """Boot: REBOOT, FACTORY_RESET and a power cycle. EEPROM is kept, RAM reset."""
        self._torque_off(now)
        self._mem[70] = 0
        self._reset_ram()
        self._born = now
        self._silent_until = now + (REBOOT_SILENCE_INSTANT if self.instant else REBOOT_SILENCE)
        startup = self._mem[60] & ct.STARTUP_TORQUE_ON
        self._boot_at = self._silent_until if startup else None

    def _log_event(self, name: str, now: float) -> None:
        self._write_log.event(self.motor_id, name, moving=self._motion.moving(now))


def _baud_code(baudrate: int) -> int:
    for code, rate in _BAUD_BY_CODE.items():
        if rate == baudrate:
            return code
    raise ValueError(
        f"baudrate {baudrate} is not an XM430 rate ({', '.join(map(str, _BAUD_BY_CODE.values()))})"
    )
