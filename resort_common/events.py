"""The Prefect event names the device agents and the control plane exchange.

Every event the fleet emits starts with `plate-resort.`; its resource is the resort
(`resort_common.names.resource_id`).
"""

from __future__ import annotations

__all__ = [
    "AGENT_KINDS",
    "ESTOPPED_EVENT",
    "ESTOP_CLEARED_EVENT",
    "ESTOP_CLEAR_EVENT",
    "ESTOP_EVENT",
    "EVENT_PREFIX",
    "HEARTBEAT_EVENT",
    "STATUS_EVENT",
    "STOPPED_EVENT",
    "cleared_event",
    "raised_event",
]

#: Prefix of every event the fleet emits.
EVENT_PREFIX = "plate-resort."

#: Stop command (control plane -> agents; payload: command id, reason, time).
ESTOP_EVENT = "plate-resort.estop"
#: Clear command (control plane -> agents).
ESTOP_CLEAR_EVENT = "plate-resort.estop-clear"
#: Acknowledgement of a stop (agent -> control plane; payload: command id, torque confirmed off).
ESTOPPED_EVENT = "plate-resort.estopped"
#: Acknowledgement of a clear (agent -> control plane).
ESTOP_CLEARED_EVENT = "plate-resort.estop-cleared"
#: The agent's status document changed (agent -> control plane).
STATUS_EVENT = "plate-resort.status"
#: The agent is alive (every `fleet.agent_heartbeat` seconds).
HEARTBEAT_EVENT = "plate-resort.agent.heartbeat"
#: The agent stopped cleanly (not a crash: no offline alert follows).
STOPPED_EVENT = "plate-resort.agent.stopped"

#: The incidents the agent reports itself, in order.
AGENT_KINDS: tuple[str, ...] = ("hardware-error", "link-lost", "estop")


def raised_event(kind: str) -> str:
    """Event that starts an incident of `kind`: `plate-resort.alert.estop.raised`."""
    return f"plate-resort.alert.{kind}.raised"


def cleared_event(kind: str) -> str:
    """Event that ends an incident of `kind`: `plate-resort.alert.estop.cleared`."""
    return f"plate-resort.alert.{kind}.cleared"
