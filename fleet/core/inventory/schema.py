"""The whole inventory file as one model (`InventoryFile`) and its JSON Schema for editors.

An inventory is one YAML file with three blocks (and an optional fourth)::

    fleet:    {name, work_pool, control_pool?, api_url?, max_concurrent_moves?, parent_heartbeat?,
               agent_heartbeat?, health_interval?, alerts?: {webhook_url | webhook_url_env | block,
               token_env?, offline_after?, lock_held_after?},
               registry?: {url?, password_env?}}
    defaults: {any resort tunable}          # every resort inherits these
    resorts:  [{name, host, ...tunables}]   # and may override them
    server?:  {hosts: [{name, address?, replicas?}], replicas?, database_url,
               database_password_var?, redis_url, redis_password_var?, balancer_port?,
               api_port?, prefect_version?}     # control hosts (Ansible role fleet_server)

The schema is committed as `inventory/schema.json` (`fleet inventory schema` writes it; a test
compares the two).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fleet.core.inventory.fleet_block import FleetSettings
from fleet.core.inventory.resort_block import ResortEntry, ResortSettings
from fleet.core.inventory.server_block import ServerSettings

__all__ = ["InventoryFile", "dump_schema", "inventory_schema"]


class InventoryFile(BaseModel):
    """A fleet inventory file: the fleet, defaults every resort inherits, and the resorts."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, title="Fleet inventory")

    fleet: FleetSettings
    defaults: ResortSettings = Field(
        default_factory=ResortSettings, description="Tunables every resort inherits."
    )
    resorts: list[ResortEntry] = Field(
        min_length=1, description="The resorts (at least one), each a plate carousel on a Pi."
    )
    server: ServerSettings | None = Field(
        default=None,
        description="Control hosts of a multi-server Prefect install (API replicas behind "
        "HAProxy, PostgreSQL, Redis), rolled out by the Ansible role fleet_server. Default: none.",
    )


def inventory_schema() -> dict[str, Any]:
    """JSON Schema of the inventory file format (for editor completion)."""
    schema = InventoryFile.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://plate-resort-fleet/inventory.schema.json",
        **schema,
    }


def dump_schema() -> str:
    """The JSON Schema as committed in inventory/schema.json (2-space indent, trailing newline)."""
    return json.dumps(inventory_schema(), indent=2) + "\n"
