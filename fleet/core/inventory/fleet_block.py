"""The `fleet:` block of an inventory file (input models) and the defaults of its heartbeats.

`FleetSettings` is what a lab writes under `fleet:`, `AlertSettings` what it writes under
`fleet.alerts:`. The constants are the defaults and bounds the parent-run watchdog
(`fleet.core.watchdog`) and the alert automations (`fleet.core.alerts`) apply to these settings.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleet.core.inventory.patterns import POOL_PATTERN, SLUG_PATTERN, URL_PATTERN
from resort_common import names

__all__ = [
    "DEFAULT_AGENT_HEARTBEAT",
    "DEFAULT_LOCK_HELD_AFTER",
    "DEFAULT_PARENT_HEARTBEAT",
    "MIN_OFFLINE_AFTER",
    "MISSED_BEATS",
    "OFFLINE_BEATS",
    "AlertSettings",
    "FleetSettings",
    "RegistrySettings",
]

#: seconds between two heartbeats of a running parent flow (`fleet.parent_heartbeat`)
DEFAULT_PARENT_HEARTBEAT = 30.0
#: a parent run silent for this many intervals is marked Crashed
MISSED_BEATS = 4

#: default `fleet.registry.handoff_lease`: the resort lock's lease (`fleet.core.locks.lease`)
HANDOFF_LEASE = 120.0
#: seconds between two agent heartbeats (`fleet.agent_heartbeat`)
DEFAULT_AGENT_HEARTBEAT = 15.0
#: an agent silent for this many heartbeats is offline (default of `alerts.offline_after`)
OFFLINE_BEATS = 4
#: Prefect refuses proactive windows shorter than this (seconds)
MIN_OFFLINE_AFTER = 10.0
#: default of `alerts.lock_held_after`, seconds
DEFAULT_LOCK_HELD_AFTER = 900.0

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_BLOCK_REF = r"^[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9-]*$"

_INPUT = ConfigDict(extra="forbid", frozen=True, strict=True)


class AlertSettings(BaseModel):
    """The `fleet.alerts:` block: where notifications go and the bounds of two incidents."""

    model_config = _INPUT

    webhook_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        description="http(s) URL that receives a JSON POST per notification "
        '({"fleet", "subject", "body"}). No credentials in it: use token_env or webhook_url_env.',
    )
    webhook_url_env: str | None = Field(
        default=None,
        pattern=_ENV_NAME,
        description="Name of the environment variable holding the webhook URL (for URLs that "
        "are secrets themselves, such as Slack's), read by `fleet provision`.",
    )
    token_env: str | None = Field(
        default=None,
        pattern=_ENV_NAME,
        description="Name of the environment variable holding a token sent as "
        "`Authorization: Bearer <token>` (read by `fleet provision`, kept in the Prefect block).",
    )
    block: str | None = Field(
        default=None,
        pattern=_BLOCK_REF,
        description="An existing Prefect notification block, as <block-type-slug>/<name> "
        "(e.g. slack-webhook/lab-alerts), instead of a webhook URL.",
    )
    offline_after: float | None = Field(
        default=None,
        ge=MIN_OFFLINE_AFTER,
        le=86400.0,
        description="Seconds without an agent heartbeat after which the agent is reported "
        f"offline; at least 2 x fleet.agent_heartbeat and {MIN_OFFLINE_AFTER:g} (Prefect's "
        f"shortest proactive window). Default {OFFLINE_BEATS} heartbeats.",
    )
    lock_held_after: float | None = Field(
        default=None,
        ge=1.0,
        le=604800.0,
        description="Seconds a resort lock may be held before it is reported. "
        f"Default {DEFAULT_LOCK_HELD_AFTER:g}.",
    )

    @model_validator(mode="after")
    def _one_destination(self) -> AlertSettings:
        given = [k for k in ("webhook_url", "webhook_url_env", "block") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "needs exactly one of webhook_url, webhook_url_env, block"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.token_env and self.block:
            raise ValueError("token_env goes with webhook_url or webhook_url_env, not block")
        if self.webhook_url and (urlsplit(self.webhook_url).password is not None):
            raise ValueError(
                "webhook_url must not carry a password: put the secret in an environment "
                "variable (token_env, or the whole URL in webhook_url_env)"
            )
        return self


class RegistrySettings(BaseModel):
    """The `fleet.registry:` block: where the plate registry keeps its database."""

    model_config = _INPUT

    url: str | None = Field(
        default=None,
        pattern=r"^(sqlite\+aiosqlite|postgresql\+asyncpg)://\S+$",
        description="SQLAlchemy URL of the registry's database: postgresql+asyncpg://user@host/db "
        "for schedulers on several machines, or sqlite+aiosqlite:///path. No password in it: "
        "use password_env. Default: plates.db in the fleet's state directory.",
    )
    password_env: str | None = Field(
        default=None,
        pattern=_ENV_NAME,
        description="Name of the environment variable holding the database password.",
    )
    handoff_lease: float = Field(
        default=HANDOFF_LEASE,
        ge=10.0,
        le=3600.0,
        description="Seconds a hand-off's room stays reserved without a sign of life from the "
        "flow run waiting on it (renewed every third of it). A waiter that died is noticed "
        "within this time: its room becomes uncertain (free again if it was never presented). "
        "Default: the resort lock's lease.",
    )

    @model_validator(mode="after")
    def _no_secret(self) -> RegistrySettings:
        if self.url and urlsplit(self.url).password is not None:
            raise ValueError(
                "url must not carry a password: name an environment variable in password_env"
            )
        if self.password_env and not self.url:
            raise ValueError("password_env goes with a url")
        return self


class FleetSettings(BaseModel):
    """The `fleet:` block."""

    model_config = _INPUT

    name: str = Field(pattern=SLUG_PATTERN, description="Fleet name (a slug).")
    work_pool: str = Field(
        pattern=POOL_PATTERN,
        description=f"Prefect work pool of the device agents (type {names.WORKER_TYPE}).",
    )
    control_pool: str | None = Field(
        default=None,
        pattern=POOL_PATTERN,
        description="Prefect work pool of the parent flows. Default <name>-control.",
    )
    api_url: str | None = Field(
        default=None,
        pattern=URL_PATTERN,
        description="Prefect API URL the agents use, e.g. http://lab-server:4200/api. "
        "Default: the agent's own PREFECT_API_URL.",
    )
    max_concurrent_moves: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Fleet-wide limit of simultaneous moves (power budget). Default: no limit.",
    )
    parent_heartbeat: float | None = Field(
        default=None,
        ge=5.0,
        le=600.0,
        description="Seconds between the heartbeats of a running parent flow. A parent run "
        f"silent for {MISSED_BEATS} of them (its process died) is marked Crashed by the "
        f"automation `fleet provision` creates. Default {DEFAULT_PARENT_HEARTBEAT:g}.",
    )
    agent_heartbeat: float | None = Field(
        default=None,
        ge=1.0,
        le=300.0,
        description="Seconds between two status publications (heartbeats) of an idle agent; it "
        f"also probes the idle servo this often. Default {DEFAULT_AGENT_HEARTBEAT:g}.",
    )
    health_interval: float | None = Field(
        default=None,
        ge=10.0,
        le=604800.0,
        description="Seconds between scheduled `fleet-health` runs (served by `fleet "
        "controller`). Default: no schedule.",
    )
    alerts: AlertSettings | None = Field(
        default=None,
        description="Notifications of incidents (hardware error, link lost, e-stop, agent "
        "offline, lock held too long), sent by Prefect automations. Default: none.",
    )
    registry: RegistrySettings | None = Field(
        default=None,
        description="The plate registry's database. Default: an SQLite file in the fleet's "
        "state directory.",
    )
