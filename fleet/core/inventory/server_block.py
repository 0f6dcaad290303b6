"""The `server:` block of an inventory file: the control hosts of a multi-server Prefect install.

What a lab writes under `server:` when its Prefect server runs as several API replicas behind
HAProxy, with PostgreSQL and Redis (the topology `fleet server up --replicas N` starts on one
machine, spread over real control hosts by the Ansible role `fleet_server`). No credentials here:
the URLs carry no password; the passwords are Ansible (vault) variables named by
`database_password_var` and `redis_password_var`. The Prefect and prefect-redis versions are the
package's own pins (`pinned_versions`), so the servers run what the agents and clients run.
"""

from __future__ import annotations

import re
from importlib import metadata
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fleet.core.inventory.patterns import (
    ANSIBLE_VAR_PATTERN,
    HOST_PATTERN,
    POSTGRES_URL_PATTERN,
    REDIS_URL_PATTERN,
)

__all__ = [
    "DEFAULT_API_PORT",
    "DEFAULT_BALANCER_PORT",
    "ServerHost",
    "ServerSettings",
    "pinned_versions",
]

#: HAProxy's port on every control host (the API URL clients use)
DEFAULT_BALANCER_PORT = 4200
#: the first API replica's port on a control host (the next replicas take the next ports)
DEFAULT_API_PORT = 4201

_INPUT = ConfigDict(extra="forbid", frozen=True, strict=True)
_PIN = re.compile(r"^(prefect|prefect-redis)\s*==\s*([0-9][0-9A-Za-z.+-]*)\s*(;.*)?$")


def pinned_versions() -> dict[str, str]:
    """The exact versions of `prefect` and `prefect-redis` this package pins (its metadata).

    Returns:
        ``{"prefect": "3.9.1", "prefect-redis": "0.3.0"}``; a name is absent when the installed
        metadata does not pin it (the package is not installed).
    """
    try:
        requires = metadata.requires("plate-resort-fleet") or []
    except metadata.PackageNotFoundError:
        return {}
    pins: dict[str, str] = {}
    for requirement in requires:
        match = _PIN.match(requirement)
        if match:
            pins.setdefault(match.group(1), match.group(2))
    return pins


class ServerHost(BaseModel):
    """One control host: where API replicas (and HAProxy) run."""

    model_config = _INPUT

    name: str = Field(
        pattern=HOST_PATTERN, description="Host name of the control host (its Ansible host)."
    )
    address: str | None = Field(
        default=None,
        pattern=HOST_PATTERN,
        description="Address Ansible and the other control hosts reach it at. Default: name.",
    )
    replicas: int | None = Field(
        default=None,
        ge=1,
        le=32,
        description="API replicas on this host. Default: server.replicas.",
    )


class ServerSettings(BaseModel):
    """The `server:` block: control hosts, replicas, PostgreSQL, Redis, the balancer's port."""

    model_config = _INPUT

    hosts: list[ServerHost] = Field(
        min_length=1,
        description="The control hosts. The first one also runs the background services and the "
        "database migration (once).",
    )
    replicas: int = Field(default=2, ge=1, le=32, description="API replicas per host. Default 2.")
    database_url: str = Field(
        pattern=POSTGRES_URL_PATTERN,
        description="PostgreSQL (>= 14.9) as postgresql+asyncpg://user@host:port/database, "
        "without the password (see database_password_var).",
    )
    database_password_var: str = Field(
        default="vault_fleet_db_password",
        pattern=ANSIBLE_VAR_PATTERN,
        description="Ansible variable (in the vault) holding the database password. "
        "Default vault_fleet_db_password.",
    )
    redis_url: str = Field(
        pattern=REDIS_URL_PATTERN,
        description="Redis (standalone) as redis://host:port/N, without a password: database N "
        "carries messaging, event ordering and leases, N+1 the background services' Docket.",
    )
    redis_password_var: str | None = Field(
        default=None,
        pattern=ANSIBLE_VAR_PATTERN,
        description="Ansible variable (in the vault) holding the Redis password. "
        "Default: Redis without a password.",
    )
    balancer_port: int = Field(
        default=DEFAULT_BALANCER_PORT,
        ge=1,
        le=65535,
        description=f"HAProxy's port on each control host. Default {DEFAULT_BALANCER_PORT}.",
    )
    api_port: int = Field(
        default=DEFAULT_API_PORT,
        ge=1,
        le=65535,
        description="Port of the first API replica on a host; replica K listens on "
        f"api_port + K - 1. Default {DEFAULT_API_PORT}.",
    )
    prefect_version: str | None = Field(
        default=None,
        pattern=r"^[0-9][0-9A-Za-z.+-]*$",
        description="Prefect version of the servers: must be the version this package pins "
        "(the default); stated to make an upgrade visible in the inventory.",
    )

    @field_validator("hosts")
    @classmethod
    def _unique_hosts(cls, hosts: list[ServerHost]) -> list[ServerHost]:
        names = [h.name for h in hosts]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate control host {', '.join(map(repr, duplicates))}")
        return hosts

    @field_validator("database_url", "redis_url")
    @classmethod
    def _no_password_and_a_port(cls, url: str) -> str:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"not a valid URL: {str(exc).lower()}") from exc
        if parts.password is not None:
            raise ValueError("must not carry a password: name a vault variable instead")
        if port is None:
            scheme = url.split("://", maxsplit=1)[0]
            raise ValueError(f"needs a port ({scheme}://host:PORT/...)")
        return url

    @field_validator("prefect_version")
    @classmethod
    def _the_pinned_version(cls, version: str | None) -> str | None:
        pinned = pinned_versions().get("prefect")
        if version is not None and pinned and version != pinned:
            raise ValueError(
                f"must be the Prefect version this package pins ({pinned}, got {version}): "
                "upgrade the package, not the servers alone"
            )
        return version

    @model_validator(mode="after")
    def _ports_apart(self) -> ServerSettings:
        top = max(self.replicas_of(h) for h in self.hosts)
        last = self.api_port + top - 1
        if self.balancer_port in range(self.api_port, last + 1):
            raise ValueError(
                f"balancer_port {self.balancer_port} collides with the replicas' ports "
                f"{self.api_port}-{last} (api_port + replicas)"
            )
        if last > 65535:
            raise ValueError(f"api_port {self.api_port} + {top} replicas passes port 65535")
        return self

    def replicas_of(self, host: ServerHost) -> int:
        """How many API replicas `host` runs."""
        return host.replicas or self.replicas
