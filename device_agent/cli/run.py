"""`device-agent run`: start a resort's agent (open the device, serve its Prefect work queue).

    device-agent run --inventory inventory/lab.yaml --device resort-a
    device-agent run --settings /etc/plate-resort/agent.yaml     # written by the rollout

Runs until SIGTERM/SIGINT, then drains (see `device_agent.agent`) and exits 0.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from device_agent.errors import ConfigurationError

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the `run` verb to the `device-agent` parser."""
    parser = subparsers.add_parser(
        "run",
        help="run the device agent (Prefect worker) for one resort",
        description="Open the resort once and serve its Prefect work queue until stopped.",
    )
    parser.add_argument("--inventory", help="fleet inventory file (with --device)")
    parser.add_argument("--device", help="resort name in the inventory")
    parser.add_argument("--settings", help="agent settings file (JSON/YAML) written by the rollout")
    parser.add_argument(
        "--poll-interval", type=float, default=None, help="fallback poll interval, s (default 15)"
    )
    parser.set_defaults(handler=run)


def _settings(args: argparse.Namespace) -> Any:
    from device_agent.settings import load_agent_settings

    if args.settings:
        if args.inventory or args.device:
            raise ConfigurationError("--settings excludes --inventory/--device")
        return load_agent_settings(args.settings)
    if not (args.inventory and args.device):
        raise ConfigurationError("run needs --inventory FILE --device NAME, or --settings FILE")
    resolver = getattr(args, "settings_resolver", None)
    if resolver is None:
        raise ConfigurationError(
            "--inventory needs the installed `device-agent` command (use --settings otherwise)"
        )
    return resolver(args.inventory, args.device)


def run(args: argparse.Namespace) -> int:
    """Handler of `device-agent run`."""
    settings = _settings(args)
    if args.poll_interval is not None:
        if not 0 < args.poll_interval <= 300:
            raise ConfigurationError("--poll-interval must be in (0, 300] seconds")
        settings = settings.model_copy(update={"poll_interval": args.poll_interval})
    # `run_agent` points Prefect at `settings.api_url` (temporary settings, not the environment)
    if not (settings.api_url or os.environ.get("PREFECT_API_URL")):
        raise ConfigurationError(
            "no Prefect API: set api_url in the inventory/settings or PREFECT_API_URL, or start "
            "a local server with `fleet server up` (found through --inventory)"
        )
    from device_agent.agent import run_agent

    return run_agent(settings)
