"""Facts shared across the fleet's boundary: names, event names, tunables, shared documents.

The leaf of the import layers: `fleet`, `flows` and `device_agent` all import it, and it imports
none of them. Whatever both the control plane and the device agent must agree on (a variable's
name, an event's name, a speed's allowed range, the status document the agent publishes) is
defined here once.

* `resort_common.names`: every name that crosses a system boundary, built from the inventory.
* `resort_common.events`: the Prefect event names the agents and the control plane exchange.
* `resort_common.tunables`: the allowed ranges and built-in defaults of a resort's settings,
  and the baud rates the Dynamixel SDK can open.
* `resort_common.documents`: the agent's status document and the e-stop latch, as typed models.
* `resort_common.variables`: writing and reading the Prefect variables those documents live in.
"""

from __future__ import annotations

__all__: list[str] = []
