"""`make demo`: a local Prefect server, the emulated fleet of `inventory/demo.yaml`, a real batch.

Run as `python -m fleet.demo` (see `fleet.demo.run`); the scenario it plays is
`fleet.demo.scenario`, its plate step `fleet.demo.plates`. It drives the fleet through
`fleet.client`, as a lab scheduler would.
"""

from __future__ import annotations

__all__: list[str] = []
