"""Prefect flows: device subflows (run inside the device worker) and parent flows (lab schedulers).

The only package that imports both `fleet` and `device_agent`; see docs/DESIGN.md.
"""

from __future__ import annotations

__all__: list[str] = []
