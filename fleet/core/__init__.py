"""The fleet's control-plane core: inventory, selection, locks, provisioning, server, status.

Runs anywhere (a lab PC, CI, the Prefect server host). It sits below `flows` and beside
`device_agent`, and imports neither; the user-facing layer (`fleet.cli`, `fleet.client`) sits
above `flows`. See docs/DESIGN.md for the layers.
"""

from __future__ import annotations

__all__: list[str] = []
