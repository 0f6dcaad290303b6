"""The `device-agent` command (Pi side): `main(argv, settings_resolver=None) -> int`.

Verb modules each have `register(subparsers)` and set `handler=` to `(args) -> int`. The console
script is `flows.agent_main:main`, which injects a resolver for `--inventory FILE --device NAME`
(the device side itself never reads the fleet inventory).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from device_agent.errors import ConfigurationError, DeviceError

__all__ = ["SettingsResolver", "main"]

# (inventory_path, device_name) -> device_agent.settings.AgentSettings
SettingsResolver = Callable[[str, str], Any]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_GROUPS: tuple[str, ...] = (
    "device_agent.cli.ctl",
    "device_agent.cli.emulate",
    "device_agent.cli.run",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="device-agent", description="Plate-resort device agent, driver and motor emulator."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _GROUPS:
        importlib.import_module(name).register(sub)
    return parser


def main(
    argv: Sequence[str] | None = None, settings_resolver: SettingsResolver | None = None
) -> int:
    """Run `device-agent` with `argv`; `settings_resolver` resolves `--inventory/--device`."""
    parser = _parser()
    args = parser.parse_args(argv)
    args.settings_resolver = settings_resolver
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except ConfigurationError as exc:
        if args.debug:
            raise
        print(f"device-agent: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (DeviceError, ValueError, OSError) as exc:
        if args.debug:
            raise
        print(f"device-agent: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
