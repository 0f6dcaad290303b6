"""`device-agent ctl`: drive one resort directly through the driver, without Prefect.

For bench work and diagnostics on a Pi (or against `device-agent emulate`)::

    device-agent ctl --port /dev/ttyUSB0 activate B --json
    device-agent ctl --inventory inventory/lab.yaml --device resort-a health

Each call opens the port, connects (settings from the inventory or the options), runs one action
and closes the port again. Torque stays as the action left it.

Safety: `ctl` takes the port's exclusive lock like the agent does, so it cannot open a port a
running agent holds (the error names the holder). It honours the e-stop latches the agents keep on
this Pi (`device_agent.pi_latch`: every `estop-latch.json` under `--state-dir` that names the same
port, or the inventory resort's own): motion and reboot are refused while one is set, and torque
cannot come on. `ctl estop` sets those latches, `ctl estop-clear` clears them. For bench work stop
the agent first, or go through the fleet (`fleet reserve` / `fleet activate`).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from device_agent.errors import ConfigurationError, DeviceError, EmergencyStopError
from device_agent.pi_latch import LatchFile, latches_for_port, state_root
from resort_common.tunables import SDK_BAUDRATES

__all__ = ["register", "run_ctl"]

log = logging.getLogger(__name__)

_DEFAULT_HOTELS = ("A", "B", "C", "D")


def register(subparsers: Any) -> None:
    """Add the `ctl` verb to the `device-agent` parser."""
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON"
    )
    parser = subparsers.add_parser(
        "ctl",
        help="drive one resort directly (no Prefect)",
        description="Drive one resort directly through the Dynamixel driver (no Prefect).",
    )
    parser.add_argument("--port", help="serial device or emulator link (default: inventory's)")
    parser.add_argument("--baud", type=int, default=None, help="baud rate (default 57600)")
    parser.add_argument("--motor-id", type=int, default=None, help="servo ID (default 1)")
    parser.add_argument("--inventory", help="fleet inventory file (with --device)")
    parser.add_argument("--device", help="resort name in the inventory")
    parser.add_argument("--speed", type=float, default=None, help="carousel speed, deg/s")
    parser.add_argument("--timeout", type=float, default=None, help="move timeout, s")
    parser.add_argument(
        "--state-dir",
        default=None,
        help="where agents keep their e-stop latches (default $PLATE_RESORT_STATE_DIR or "
        "/var/lib/plate-resort-agent; with --inventory the resort's own)",
    )
    parser.add_argument("--json", action="store_true", default=False, help="print JSON")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    act = actions.add_parser("activate", parents=[json_flag], help="bring HOTEL into position")
    act.add_argument("hotel")
    actions.add_parser("home", parents=[json_flag], help="go to resort angle 0")
    move = actions.add_parser("move", parents=[json_flag], help="move to DEG (resort frame)")
    move.add_argument("degrees", type=float)
    speed = actions.add_parser("speed", parents=[json_flag], help="set speed (deg/s) now")
    speed.add_argument("value", type=float)
    speed.add_argument("--acceleration", type=float, default=None, help="deg/s^2")
    for name, text in (
        ("position", "print the angle and the hotel in position"),
        ("health", "print temperature, voltage, current and hardware errors"),
        ("estop", "torque off now and set the agents' e-stop latches for this port"),
        ("estop-clear", "clear the agents' e-stop latches for this port (no port access)"),
        ("reboot", "reboot the servo (clears hardware errors) and re-apply settings"),
    ):
        actions.add_parser(name, parents=[json_flag], help=text)
    parser.set_defaults(handler=run_ctl)


def _config(args: argparse.Namespace) -> tuple[Any, list[LatchFile]]:
    """The device config and the e-stop latches that guard its port."""
    from pydantic import ValidationError

    from device_agent.settings import DeviceConfig

    overrides: dict[str, Any] = {}
    if args.port:
        overrides["serial_port"] = args.port
    if args.baud is not None:
        overrides["baudrate"] = args.baud
    if args.motor_id is not None:
        overrides["motor_id"] = args.motor_id
    if args.speed is not None:
        overrides["speed"] = args.speed
    if args.timeout is not None:
        overrides["move_timeout"] = args.timeout
    if args.baud is not None and args.baud not in SDK_BAUDRATES:
        raise ConfigurationError(
            f"--baud {args.baud} is not accepted by the Dynamixel SDK "
            f"(allowed: {', '.join(map(str, SDK_BAUDRATES))})"
        )
    own: LatchFile | None = None
    if args.inventory or args.device:
        if not (args.inventory and args.device):
            raise ConfigurationError("--inventory and --device go together")
        resolver = getattr(args, "settings_resolver", None)
        if resolver is None:
            raise ConfigurationError(
                "--inventory needs the installed `device-agent` command (use --port otherwise)"
            )
        settings = resolver(args.inventory, args.device)
        base = settings.device
        data = {**base.model_dump(), **overrides}
        own = LatchFile.in_state_dir(
            settings.state_dir, resort=base.name, serial_port=data["serial_port"]
        )
    else:
        if not args.port:
            raise ConfigurationError("ctl needs --port PATH (or --inventory FILE --device NAME)")
        data = {"name": "ctl", "hotels": _DEFAULT_HOTELS, **overrides}
    try:
        config = DeviceConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigurationError(f"{where}: {first['msg']}") from None
    root = Path(args.state_dir) if args.state_dir else state_root()
    latches = latches_for_port(root, config.serial_port)
    if own is not None and all(latch.path != own.path for latch in latches):
        latches.insert(0, own)
    return config, latches


def _refuse_if_latched(config: Any, latches: list[LatchFile]) -> None:
    """Raise `EmergencyStopError` when one of `latches` is set (re-read each call)."""
    for latch in latches:
        record = latch.latched()
        if record is not None:
            by = f" by {record.by}" if record.by else ""
            raise EmergencyStopError(
                f"{config.serial_port} is emergency-stopped (latch {latch.path}{by}"
                f"{' at ' + record.at if record.at else ''}: {record.reason or 'no reason'}); "
                f"clear it with `fleet estop-clear {record.resort}` or "
                f"`device-agent ctl --port {config.serial_port} estop-clear`"
            )


def _print(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(payload, sort_keys=True))
    else:
        print(text)


def _health_text(health: Any) -> str:
    errors = ", ".join(health.hardware_errors) or "none"
    line = (
        f"temperature {health.temperature:.0f} C, voltage {health.voltage:.1f} V, "
        f"current {health.current:.3f} A, torque {'on' if health.torque else 'off'}, "
        f"{'moving' if health.moving else 'still'}, hardware errors: {errors}"
    )
    if health.warnings:
        line += "; warnings: " + "; ".join(health.warnings)
    return line


def run_ctl(args: argparse.Namespace) -> int:
    """Run one `ctl` action; returns the exit code (errors propagate to `device_agent.cli`)."""
    from device_agent.driver import ResortDriver
    from device_agent.transport import SdkTransport

    quiet = logging.getLogger("device_agent")
    saved_level = quiet.level
    if not getattr(args, "debug", False):  # the result (or the error) is the output: one line
        quiet.setLevel(logging.ERROR)
    try:
        config, latches = _config(args)
        if args.action == "estop-clear":
            return _estop_clear(args, config, latches)
        if args.action in _GUARDED:
            _refuse_if_latched(config, latches)
        transport = SdkTransport(config.serial_port, config.baudrate, config.motor_id)
        driver = ResortDriver(
            transport, config, interlock=lambda: _refuse_if_latched(config, latches)
        )
        try:
            return _act(args, driver, latches)
        finally:
            driver.close()
    except DeviceError as exc:
        if args.json:
            print(
                json.dumps(
                    {
                        "ok": False,
                        "action": args.action,
                        "error": type(exc).__name__,
                        "message": str(exc),
                        **({"hardware_errors": exc.names} if hasattr(exc, "names") else {}),
                    },
                    sort_keys=True,
                )
            )
        raise
    finally:
        quiet.setLevel(saved_level)


#: actions refused while an e-stop latch of the port is set
_GUARDED = frozenset({"activate", "home", "move", "reboot"})


def _estop_clear(args: argparse.Namespace, config: Any, latches: list[LatchFile]) -> int:
    cleared = []
    for latch in latches:
        if latch.read() is not None:
            latch.write(False, "cleared", by="device-agent ctl")
            cleared.append(str(latch.path))
    payload = {"ok": True, "action": "estop-clear", "device": config.name, "cleared": cleared}
    text = (
        "e-stop latch cleared: " + ", ".join(cleared)
        if cleared
        else f"no e-stop latch for {config.serial_port} (nothing to clear)"
    )
    _print(args, payload, text)
    return 0


def _act(args: argparse.Namespace, driver: Any, latches: list[LatchFile]) -> int:
    action = args.action
    base: dict[str, Any] = {"ok": True, "action": action, "device": driver.config.name}
    if action in ("activate", "home", "move"):
        driver.connect()
        try:
            if action == "activate":
                result = driver.activate_hotel(args.hotel)
            elif action == "home":
                result = driver.go_home()
            else:
                result = driver.move_to_angle(args.degrees)
        except KeyboardInterrupt:
            driver.halt()  # Ctrl-C: stop the carousel where it is, not wherever it was going
            raise
        _print(
            args,
            {**base, **result.to_dict()},
            f"{'hotel ' + result.hotel if result.hotel else 'no hotel'} in position: "
            f"{result.position:.2f} deg (target {result.target:.2f}) in {result.duration:.2f} s",
        )
    elif action == "speed":
        driver.connect()
        driver.set_speed(args.value, args.acceleration)
        accel = driver.acceleration
        _print(
            args,
            {**base, "speed": args.value, "acceleration": accel},
            f"speed {args.value:g} deg/s, acceleration {accel:g} deg/s^2 "
            "(until the next connect: set `speed` in the inventory to keep it)",
        )
    elif action == "position":
        driver.connect(configure=False)
        position = driver.request_position()
        hotel = driver.request_active_hotel()
        _print(
            args,
            {**base, "position": position, "hotel": hotel},
            f"{position:.2f} deg, {'hotel ' + hotel if hotel else 'no hotel'} in position",
        )
    elif action == "health":
        driver.connect(configure=False)
        health = driver.request_health()
        _print(args, {**base, **health.to_dict()}, _health_text(health))
    elif action == "estop":
        driver.connect(configure=False)
        confirmed = driver.emergency_stop()
        for latch in latches:
            latch.write(True, "device-agent ctl estop", by="device-agent ctl")
        latched = [str(latch.path) for latch in latches]
        _print(
            args,
            {**base, "ok": confirmed, "torque": not confirmed, "latched": latched},
            (
                "emergency stop: torque off (read back)"
                if confirmed
                else "emergency stop sent: torque off NOT confirmed"
            )
            + (
                f"; latched in {', '.join(latched)}"
                if latched
                else "; no agent latch for this port (not latched)"
            ),
        )
        return 0 if confirmed else 1
    elif action == "reboot":
        driver.connect(configure=False)
        health = driver.reboot()
        _print(args, {**base, **health.to_dict()}, "rebooted: " + _health_text(health))
    else:  # pragma: no cover - argparse restricts the choices
        raise ConfigurationError(f"unknown action {action!r}")
    return 0
