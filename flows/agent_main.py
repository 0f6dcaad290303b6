"""Console entry of `device-agent`: the device CLI with fleet-inventory resolution injected."""

from __future__ import annotations

from collections.abc import Sequence

from device_agent.cli import main as device_main

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run `device-agent`, resolving `--inventory FILE --device NAME` via the inventory."""
    from flows.agent_settings import resolve_agent_settings

    return device_main(argv, settings_resolver=resolve_agent_settings)
