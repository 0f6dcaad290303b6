"""The `fleet` command: a thin CLI over the fleet library (`main(argv) -> int`).

Each verb group lives in its own module with a `register(subparsers)` function that adds its
parsers and sets `handler=` to a callable `(args) -> int`. Errors become one line on stderr and an
exit code (see `EXIT_CODES`); tracebacks only with `--debug`. Prefect's own console output
(engine INFO lines, the traceback of a failed flow run) stays off the terminal unless `--debug`:
the same lines are in the Prefect UI, with the run.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from fleet.core.errors import (
    DeviceBusyError,
    FleetError,
    InventoryError,
    LeaseError,
    PlanError,
    PlateError,
    RegistryUnavailableError,
    ServerUnavailableError,
)

__all__ = ["EXIT_CODES", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SERVER, EXIT_BUSY = 0, 1, 2, 3, 4
EXIT_CODES = {
    InventoryError: EXIT_USAGE,
    PlanError: EXIT_USAGE,
    PlateError: EXIT_USAGE,
    RegistryUnavailableError: EXIT_SERVER,
    ServerUnavailableError: EXIT_SERVER,
    DeviceBusyError: EXIT_BUSY,
    LeaseError: EXIT_BUSY,
}

# Verb-group modules, in `--help` order. Each has `register(subparsers)`.
_GROUPS = (
    "fleet.cli.inventory",
    "fleet.cli.server",
    "fleet.cli.provision",
    "fleet.cli.agent_ops",
    "fleet.cli.ops",
    "fleet.cli.maintenance",
    "fleet.cli.plates",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleet", description="Run a lab's fleet of plate resorts from Prefect."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _GROUPS:
        importlib.import_module(name).register(sub)
    return parser


def exit_code_for(exc: BaseException) -> int:
    """Exit code for an exception raised by a handler (1 for any other fleet/device error)."""
    for cls, code in EXIT_CODES.items():
        if isinstance(exc, cls):
            return code
    return EXIT_FAILED


#: Prefect's logging setting for its console handler (read when Prefect is imported)
PREFECT_CONSOLE_LEVEL = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"


class _OwnWarnings(logging.Handler):
    """The project's own warnings on the current `sys.stderr` (one per logger, added once)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def _logging(debug: bool) -> bool:
    """Our warnings on stderr; Prefect's console handler silenced unless `--debug`.

    Prefect's handler sits on the root logger and also carries the engine's INFO lines and the
    traceback of every failed flow run (those reach the Prefect UI through its API handler, which
    is not touched). The project's loggers get a handler of their own, so their warnings still
    show (they also reach Prefect's handler, which drops them). Returns True when it set
    Prefect's setting (`main` removes it again on return).
    """
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
        return False
    for name in ("fleet", "flows", "device_agent"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
        if not any(isinstance(h, _OwnWarnings) for h in logger.handlers):
            handler = _OwnWarnings()
            handler.setLevel(logging.WARNING)
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)
    if PREFECT_CONSOLE_LEVEL in os.environ:
        return False
    os.environ[PREFECT_CONSOLE_LEVEL] = "CRITICAL"
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `fleet` command with `argv` (default `sys.argv[1:]`); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    quieted = _logging("--debug" in argv)  # before a verb module imports Prefect
    try:
        return _run(argv)
    finally:
        if quieted:
            os.environ.pop(PREFECT_CONSOLE_LEVEL, None)


def _run(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("fleet: interrupted", file=sys.stderr)
        return 130
    except FleetError as exc:
        if args.debug:
            raise
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"fleet: error: {line}", file=sys.stderr)
        run_url = getattr(exc, "run_url", None)
        if run_url:
            print(f"fleet: the run's logs: {run_url}", file=sys.stderr)
        return exit_code_for(exc)
    except Exception as exc:  # device errors and Prefect errors reach the user as one line
        if args.debug:
            raise
        print(f"fleet: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
