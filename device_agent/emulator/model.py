"""The XM430-W350 model: control table, Protocol 2.0 instructions, faults, bus watchdog, write log.

Transport-free: `XM430Model.feed(bytes)` returns the status packets to send and when. The in-memory
wire (`MemoryPort`) and the pty server both sit on top of it. This module is the servo's public
face (packets in and out, fault injection, stats); its parts: `servo` (state, torque, motion,
current, boot, timed events), `instructions` (what each instruction does), `faults` (fault kinds
and flags), `write_log`, `physics` (the profile and the shaft) and `table` (the table's bytes and
write validation). Facts from the ROBOTIS e-Manual (XM430-W350 and Protocol 2.0
pages) and from reports of the servo's behaviour where the manual is silent.

The model is meant to be at least as strict as the real servo where safety is concerned. Where the
e-manual is silent or vague, it takes the stricter reading; each such choice is listed here with
its source, or marked *assumption*:

* Power-on, REBOOT and the ``power-cycle`` fault (servo supply lost and back while the USB link
  stays up) reset RAM to its defaults: torque off, Profile Velocity/Acceleration 0,
  Bus Watchdog 0, LED 0, Hardware Error Status 0, Goal PWM/Current at PWM/Current Limit. The shaft
  stops where it is, the multi-turn count is lost (Present Position single-turn absolute, 0..4095 +
  Homing Offset), Realtime Tick restarts at 0 (after REBOOT too: *assumption*, it is the
  same boot), and nothing is answered for `REBOOT_SILENCE` (~0.4 s measured on an XC330).
  A power cycle is modelled as an instant drop and return followed by that boot (*assumption*).
  EEPROM is kept.
* Goal Position reads 0 after power-on, REBOOT and a power cycle (*assumption*: the e-Manual says it
  is undefined; 0 makes a driver that enables torque without first writing goal = present move
  visibly).
* Torque-on never copies Present Position into Goal Position (*assumption*: what the goal
  holds at torque-on is undocumented): the servo drives to whatever Goal Position holds, with the
  current profile, in mode 3 after the single-turn re-frame and clamped into Min/Max Position Limit
  (*assumption*).
* Startup Configuration (60) bit 0 turns torque on when the boot ends, by the rule above,
  so towards Goal Position 0 (*assumption*: the strict reading; a driver keeps bit 0 clear).
  Bit 1 (restore the RAM backup) is not modelled: RAM always boots at its defaults (*assumption*).
* Drive Mode (10) accepts only the bits in 0x0D and Operating Mode (11) only 0, 1, 3, 4, 5, 16;
  anything else answers Data Range Error (the error number is an *assumption*).
  Drive Mode bit 3 (fw >= 45): a write of the mode's goal item (Goal Position in modes
  3/4/5) while torque is off turns torque on, unless an error in the Shutdown mask is latched, and
  executes it.
* Min/Max Position Limit apply in mode 3 only; a goal outside them answers Data Range Error
  (0x04 rather than 0x06 is an *assumption*). In modes 4 and 5 Goal Position may be
  +-1,048,575 and Present Position counts turns; it is re-framed to one turn only by a change to
  mode 3, torque-on in mode 3, power-on and REBOOT.
* Mode 5 (current-based position): moves follow the same velocity-based profile as mode
  3, and the output is capped by |Goal Current|: Present Current never exceeds it. A Goal Current
  below what the profile needs (`physics.Profile.peak_current`: the model's 100 units with an
  acceleration ramp, 60 without; checked when a move starts and when Goal Current is written
  during one: *assumption*) cannot move the shaft, which is then treated exactly like a jam.
  Modes 0, 1 and 16 are accepted but their physics is not modelled: torque holds the shaft.
* ``jam``: the shaft stops where it is (a move under way stops at once; at rest, the
  next move cannot leave its start) while the goal stays pending: Moving 1, Present Velocity 0,
  Moving Status following error (0x08) and not in position, Present Current at the cap in the
  direction of travel: |Goal Current| in mode 5, Current Limit in modes 3/4 (the stall current:
  *assumption*). A jam held above 50 % of Current Limit (*assumption*) for `JAM_OVERLOAD_SECONDS`
  trips Overload (70 bit 0x20), which with the default Shutdown cuts torque. ROBOTIS says "a few
  seconds" of high current (DynamixelSDK #285) and one report saw ~5 s at ~940 mA in mode 3;
  3.0 s is the stricter choice (*assumption*). The trip time counts from when the jam began
  pushing, whenever someone looks. ``clear`` frees the shaft: it carries on to its goal, re-planned
  from rest where it stood. ``stall`` is the soft version: the move stops 40 % of the way, at 900
  units, and never trips Overload (*assumption*, kept for following-error tests).
* Bus Watchdog (98): 1..127 arm it in 20 ms units; it counts only while torque is on, and
  every instruction packet the servo receives for its ID or broadcast restarts it (packets lost to
  ``mute``, the boot silence, a baud mismatch or a bad CRC do not: *assumption*, the servo never
  saw them). On expiry the servo stops abruptly where the shaft is at that instant, keeps torque on
  and holds (as reports say), 98 reads -1, and writes to Goal PWM/Current/Velocity/Position
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

import logging
from dataclasses import dataclass
from typing import Any

from device_agent import control_table as ct
from device_agent.emulator import protocol as p
from device_agent.emulator.faults import FAULT_KINDS, HARDWARE_FAULTS
from device_agent.emulator.instructions import InstructionSet

__all__ = ["LATE_DELAY", "Reply", "XM430Model"]

_log = logging.getLogger(__name__)

LATE_DELAY = 0.060  # s: after the SDK's ~34-37 ms status timeout


@dataclass(frozen=True, slots=True)
class Reply:
    """A status packet to put on the wire `delay` seconds after the instruction arrived."""

    data: bytes
    delay: float = 0.0


class XM430Model(InstructionSet):
    """One emulated XM430-W350 on a Protocol 2.0 bus.

    Args:
        motor_id: the servo's ID (EEPROM 7).
        instant: moves complete at once (unit tests); otherwise in real time per the profile.
        clock: monotonic seconds; inject a fake one to step time by hand.
        log: optional path of a JSON-lines write log (appended, one line per logged write).
        baudrate: the servo's baud (sets EEPROM 8; the pty server compares it to the host's).
    """

    # ------------------------------------------------------------------ public API

    @property
    def writes(self) -> list[dict[str, Any]]:
        """The write log's entries so far (see `device_agent.emulator.write_log`)."""
        return self._write_log.entries

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
            if now < self._silent_until or self._faults.mute:
                return []
            self.packets += 1
            self._fed = now  # every packet received for this servo restarts the bus watchdog
            answer_id = self.motor_id  # a write to ID (7) still answers from the old ID
            statuses = self._execute(pkt, now)
            if not statuses:
                return []
            delay = 0.0 if self.instant else self._mem[9] * 2e-6
            if self._faults.late:
                delay += LATE_DELAY
            out = [
                Reply(p.build_status(answer_id, err, data, corrupt=self._faults.corrupt), delay)
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
                self._faults.stall = True
                if motion.block is None:
                    motion.hold_here(now, "stall")
            elif kind == "jam":
                self._faults.jam = True
                motion.hold_here(now, "jam")
                self._update_overload(now)
            elif kind == "power-cycle":
                self._log_event("power-cycle", now)
                self._power_on(now)
            elif kind == "mute":
                self._faults.mute = True
            elif kind == "unmute":
                self._faults.mute = False
            elif kind == "corrupt":
                self._faults.corrupt = True
            elif kind == "late":
                self._faults.late = True
            elif kind == "unplug":
                if self.usb_plugged:
                    self.usb_plugged = False
                    self.usb_generation += 1
            elif kind == "replug":
                self.usb_plugged = True
            elif kind == "clear":
                self._faults.clear()
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
            faults = self._faults.names(self._mem[70], usb_plugged=self.usb_plugged)
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
            self._write_log.close()
