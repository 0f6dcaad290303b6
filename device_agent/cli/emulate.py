"""`device-agent emulate` and `device-agent fault`: run the XM430 emulator on a pty, inject faults.

::

    device-agent emulate --link run/ttyDXL-A [--motor-id 1] [--baud 57600] [--log writes.jsonl]
    device-agent fault --link run/ttyDXL-A overload

Also reachable as ``python -m device_agent.emulator --link PATH ...`` (no Prefect import, fast).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from device_agent.control_table import XM430_BAUD_CODES
from device_agent.emulator.faults import FAULT_KINDS
from device_agent.errors import ConfigurationError

__all__ = [
    "FAULT_CHOICES",
    "XM430_BAUDRATES",
    "emulate_main",
    "register",
    "run_emulate",
    "run_fault",
]

_log = logging.getLogger(__name__)

# The CLI is the emulator's front end: its fault kinds are the model's.
FAULT_CHOICES = FAULT_KINDS
# Baud rates the XM430 supports (Baud Rate register 8, codes 0-7).
XM430_BAUDRATES = tuple(XM430_BAUD_CODES)


def _add_emulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--link", required=True, help="symlink to publish, e.g. run/ttyDXL-A")
    parser.add_argument("--motor-id", type=int, default=1, help="servo ID, 0-252 (default 1)")
    parser.add_argument("--baud", type=int, default=57600, help="servo baud rate (default 57600)")
    parser.add_argument("--log", default=None, help="append a JSON line per logged write here")
    parser.add_argument("--instant", action="store_true", help="moves complete at once")
    parser.add_argument(
        "--owned-by-agent",
        action="store_true",
        help="started by a device agent (an agent that adopts it stops it); an emulator started "
        "on its own outlives every agent",
    )


def register(subparsers: Any) -> None:
    """Add the `emulate` and `fault` verbs to the `device-agent` parser."""
    emulate = subparsers.add_parser(
        "emulate",
        help="run an XM430-W350 emulator on a pseudo-terminal",
        description="Serve an emulated XM430-W350 on a pty and keep a symlink at --link.",
    )
    _add_emulate_arguments(emulate)
    emulate.set_defaults(handler=run_emulate)
    fault = subparsers.add_parser(
        "fault",
        help="inject a fault into a running emulator",
        description="Inject a fault into the emulator serving --link (via PATH.ctl).",
    )
    fault.add_argument("--link", required=True, help="the emulator's --link")
    fault.add_argument("kind", choices=FAULT_CHOICES, metavar="KIND", help=" ".join(FAULT_CHOICES))
    fault.set_defaults(handler=run_fault)


def _validate(args: argparse.Namespace) -> None:
    if not 0 <= args.motor_id <= 252:
        raise ConfigurationError(f"--motor-id {args.motor_id}: allowed 0-252")
    if args.baud not in XM430_BAUDRATES:
        allowed = ", ".join(map(str, XM430_BAUDRATES))
        raise ConfigurationError(f"--baud {args.baud}: allowed {allowed}")
    link = Path(args.link)
    if not link.parent.is_dir():
        raise ConfigurationError(f"--link {link}: directory {link.parent} does not exist")
    if link.exists() and not link.is_symlink():
        raise ConfigurationError(f"--link {link}: exists and is not a symlink")
    if args.log is not None and not Path(args.log).parent.is_dir():
        raise ConfigurationError(f"--log {args.log}: directory does not exist")


def _raise_priority() -> None:
    """Best effort: a real servo is never descheduled, so answer ahead of busy-waiting hosts.

    On a loaded machine the SDK's ~34 ms status timeout can otherwise expire while the emulator
    waits for a CPU. Needs privileges (root or CAP_SYS_NICE); silently skipped without them.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    except OSError:
        _log.debug("cannot raise the emulator's priority (no privileges); running at default")


def run_emulate(args: argparse.Namespace) -> int:
    """Run the emulator until SIGTERM/SIGINT; print the link and pts once ready."""
    _validate(args)
    from device_agent.emulator.model import XM430Model
    from device_agent.emulator.pty_server import PtyServer

    model = XM430Model(
        motor_id=args.motor_id, instant=args.instant, log=args.log, baudrate=args.baud
    )
    _raise_priority()
    server = PtyServer(args.link, model, owned_by_agent=args.owned_by_agent)
    server.start()
    server.install_signal_handlers()

    def ready(srv: PtyServer) -> None:
        print(
            f"emulating XM430-W350 id {args.motor_id} at {args.baud} baud: "
            f"{srv.link} -> {srv.pts} (control {srv.ctl_path})",
            flush=True,
        )

    server.serve_forever(ready)
    _log.info("emulator at %s stopped", args.link)
    return 0


def run_fault(args: argparse.Namespace) -> int:
    """Send one fault to the emulator at ``--link``; exit 1 when none is there."""
    from device_agent.emulator.pty_server import control_path, control_request

    try:
        answer = control_request(args.link, {"fault": args.kind})
    except (FileNotFoundError, ConnectionRefusedError):
        print(
            f"device-agent: error: --link {args.link}: no emulator is running there "
            f"(no control socket at {control_path(args.link)})",
            file=sys.stderr,
        )
        return 1
    except (OSError, ValueError) as exc:
        print(f"device-agent: error: --link {args.link}: {exc}", file=sys.stderr)
        return 1
    if not answer.get("ok"):
        print(f"device-agent: error: {answer.get('error')}", file=sys.stderr)
        return 1
    print(json.dumps({"link": args.link, "fault": args.kind, "ok": True}))
    return 0


def emulate_main(argv: Sequence[str] | None = None) -> int:
    """``python -m device_agent.emulator``: the `emulate` verb alone (no Prefect import)."""
    parser = argparse.ArgumentParser(
        prog="python -m device_agent.emulator",
        description="Serve an emulated XM430-W350 on a pty and keep a symlink at --link.",
    )
    parser.add_argument("--debug", action="store_true", help="debug logs and tracebacks")
    _add_emulate_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return run_emulate(args)
    except ConfigurationError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if args.debug:
            raise
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
