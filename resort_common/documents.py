"""The two documents the agents and the control plane share through Prefect variables.

* `AgentStatus`: what a resort's agent publishes in its status variable
  (`names.status_variable_name`) on every change and every heartbeat.
* `EstopLatch`: the fleet's e-stop latch of one resort (`names.estop_variable_name`), written by
  `fleet estop` / `fleet estop --clear` and read by the agent when it starts or reconnects.

Writers build the model and store `to_document()`; readers call `parse()`, which never raises:
a variable that is missing, unreadable or from another version reads as "nothing known".
Unknown keys are ignored, so a reader tolerates a writer that adds a field.
"""

from __future__ import annotations

import json
from typing import Any, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

__all__ = ["AgentStatus", "EstopLatch"]

_DOCUMENT = ConfigDict(extra="ignore", frozen=True)


def _as_dict(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return dict(value) if isinstance(value, dict) else None


class _Document(BaseModel):
    model_config = _DOCUMENT

    @classmethod
    def parse(cls, value: Any) -> Self | None:
        """The document in a variable's value (a dict or its JSON text); None when unreadable."""
        data = _as_dict(value)
        if data is None:
            return None
        try:
            return cls.model_validate(data)
        except ValidationError:
            return None

    def to_document(self) -> dict[str, Any]:
        """The JSON-ready dict stored in the variable."""
        return self.model_dump(mode="json")


class AgentStatus(_Document):
    """A resort as its agent sees it. Degrees, deg/s, deg/s^2; times are ISO 8601 in UTC."""

    name: str
    online: bool = False
    connected: bool = False
    position: float | None = None
    active_hotel: str | None = None
    moving: bool = False
    estopped: bool = False
    estop_reason: str | None = None
    estop_confirmed: bool | None = None
    fleet_latch_known: bool = False
    power_losses: int = 0
    faulted: bool = False
    last_error: str | None = None
    health: dict[str, Any] | None = None
    speed: float | None = None
    acceleration: float | None = None
    current_run: str | None = None
    events_connected: bool = False
    runs_executed: int = 0
    runs_claimed_from_events: int = 0
    pid: int | None = None
    updated_at: AwareDatetime | None = None


class EstopLatch(_Document):
    """The fleet's e-stop latch of one resort: set by a stop, released by a newer clear."""

    estopped: bool = False
    reason: str | None = None
    command_id: str | None = None
    at: str | None = None
    by: str = ""
