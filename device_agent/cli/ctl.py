"""`device-agent ctl`: drive one resort directly through the driver, without Prefect.

For bench work and diagnostics on a Pi (or against `device-agent emulate`)::

    device-agent ctl --port /dev/ttyUSB0 activate B --json
    device-agent ctl --inventory inventory/lab.yaml --device resort-a health

Each call opens the port, connects (settings from the inventory or the options), runs one action
and closes the port again. Torque stays as the action left it.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from device_agent.control_table import SDK_BAUDRATES
from device_agent.errors import ConfigurationError, DeviceError

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
        ("estop", "torque off now"),
        ("reboot", "reboot the servo (clears hardware errors) and re-apply settings"),
    ):
        actions.add_parser(name, parents=[json_flag], help=text)
    parser.set_defaults(handler=run_ctl)


def _config(args: argparse.Namespace) -> Any:
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
    if args.inventory or args.device:
        if not (args.inventory and args.device):
            raise ConfigurationError("--inventory and --device go together")
        resolver = getattr(args, "settings_resolver", None)
        if resolver is None:
            raise ConfigurationError(
                "--inventory needs the installed `device-agent` command (use --port otherwise)"
            )
        base = resolver(args.inventory, args.device).device
        data = {**base.model_dump(), **overrides}
    else:
        if not args.port:
            raise ConfigurationError("ctl needs --port PATH (or --inventory FILE --device NAME)")
        data = {"name": "ctl", "hotels": _DEFAULT_HOTELS, **overrides}
    try:
        return DeviceConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigurationError(f"{where}: {first['msg']}") from None


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
        config = _config(args)
        transport = SdkTransport(config.serial_port, config.baudrate, config.motor_id)
        driver = ResortDriver(transport, config)
        try:
            return _act(args, driver)
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


def _act(args: argparse.Namespace, driver: Any) -> int:
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
        driver.emergency_stop()
        _print(args, {**base, "torque": False}, "emergency stop: torque off")
    elif action == "reboot":
        driver.connect(configure=False)
        health = driver.reboot()
        _print(args, {**base, **health.to_dict()}, "rebooted: " + _health_text(health))
    else:  # pragma: no cover - argparse restricts the choices
        raise ConfigurationError(f"unknown action {action!r}")
    return 0
