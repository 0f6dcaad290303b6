"""Every private or internal Prefect name `fleet` uses, each next to its public alternative.

Nothing else in `fleet` (core, CLI, client, demo) touches these names; the server process
(`fleet.core._server_main`) takes its two from here too. `tests/fleet/test_prefect_adapter.py`
pins each name and the signature relied on, and fails when one appears outside this module, so a
Prefect upgrade that moves one fails in one place.

Relied on without being called: `prefect.client.base._parse_retry_after`. Prefect's client honours
a `Retry-After` header on a 503 through it, which is what the server process's `RetryAfter503`
wrapper counts on (the public alternative, the client's own back-off, waits 2, 4, 8 s).

Public, so used directly where needed: `prefect.utilities.asyncutils.run_coro_as_sync` (a
non-underscore name in a module of Prefect's SDK reference, the bridge Prefect's own sync entry
points use), `FlowRunContext.get()`, `temporary_settings`, `Variable`, `emit_event`,
`get_events_client`, the event filter and automation schemas, and the client's documented
create/read/update methods.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from prefect.events.clients import PrefectEventSubscriber
    from prefect.events.filters import EventFilter

__all__ = [
    "WEBSERVER_ONLY_ENV",
    "allow_scheduled_runs_on_sqlalchemy_21",
    "create_final_app",
    "drain_queued_logs_and_events",
    "events_subscriber",
    "global_settings_kept",
    "increment_slot_with_lease",
    "post_events",
    "refresh_global_settings",
    "release_lease",
    "renew_lease_sync",
    "run_all_services",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- settings


# Private: `prefect.context.GLOBAL_SETTINGS_CONTEXT` (read and reassigned) and
# `refresh_global_settings_context()`. The public `prefect.settings.temporary_settings` sets the
# settings of the current context only; threads that do not copy the caller's context (Prefect's
# event and log workers, the lease renewal thread) read the global snapshot taken at import.


@contextlib.contextmanager
def global_settings_kept() -> Iterator[None]:
    """Put Prefect's process-wide settings back, on exit, as they were on entry."""
    import prefect.context

    saved = prefect.context.GLOBAL_SETTINGS_CONTEXT
    try:
        yield
    finally:
        prefect.context.GLOBAL_SETTINGS_CONTEXT = saved


def refresh_global_settings() -> None:
    """Re-read Prefect's process-wide settings from `os.environ` (see `global_settings_kept`)."""
    import prefect.context

    prefect.context.refresh_global_settings_context()


def drain_queued_logs_and_events(timeout: float) -> None:
    """Send this process's queued Prefect logs and events now (best effort, each up to `timeout`).

    Private: `drain_all()` of `APILogWorker` and `EventsWorker`, inherited from
    `prefect._internal.concurrency.services`. No public call flushes them; Prefect drains them
    itself only at interpreter exit, when a stopped server makes each send retry for a minute.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        try:
            service.drain_all(timeout=timeout)
        except Exception as exc:  # flushing is best effort; stopping must go on
            logger.debug("flushing %s failed: %s", service.__name__, exc)


# --------------------------------------------------------------------------- leases

# The public alternative to the three lease calls below is `prefect.concurrency.asyncio.concurrency`
# (and its sync twin), which drives them. It does not serve a resort lock: its waiter sleeps for
# the server's `Retry-After` and is not woken when a slot frees, it cannot record who holds a
# slot, and a busy SQLite server's refusals are retried after 2, 4, 8 s (see `fleet.core.locks`).
# The client methods behind it have no underscore but are not documented.


async def increment_slot_with_lease(
    client: Any, name: str, lease_duration: float, run_id: str | None
) -> UUID | None:
    """Take one slot of the global concurrency limit `name` with a lease held by run `run_id`.

    Returns:
        The lease id, or None when no limit of that name exists.

    Raises:
        httpx.HTTPStatusError: e.g. 423 when the slot is taken; callers classify the others.
        httpx.TransportError: the server did not answer.
    """
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.client.schemas.responses import ConcurrencyLimitWithLeaseResponse

    holder = ConcurrencyLeaseHolder(type="flow_run", id=UUID(run_id)) if run_id else None
    response = await client.increment_concurrency_slots_with_lease(
        names=[name],
        slots=1,
        mode="concurrency",
        lease_duration=lease_duration,
        holder=holder,
    )
    granted = ConcurrencyLimitWithLeaseResponse.model_validate(response.json())
    return granted.lease_id if granted.limits else None


def renew_lease_sync(client: Any, lease_id: UUID, lease_duration: float) -> None:
    """Extend lease `lease_id` by `lease_duration` seconds (a sync client).

    Raises:
        httpx.HTTPStatusError: 404/410 when the lease expired or was released.
    """
    client.renew_concurrency_lease(lease_id=lease_id, lease_duration=lease_duration)


async def set_active_slots(client: Any, name: str, active_slots: int) -> None:
    """Set the taken slots of the global concurrency limit `name` (an operator's repair).

    Raises:
        httpx.HTTPStatusError: the server refused it.
    """
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    await client.update_global_concurrency_limit(
        name, GlobalConcurrencyLimitUpdate(active_slots=active_slots)
    )


async def release_lease(client: Any, lease_id: UUID) -> None:
    """Give back the slot held by lease `lease_id` (an async client).

    Raises:
        httpx.HTTPStatusError: the server refused it.
    """
    await client.release_concurrency_slots_with_lease(lease_id=lease_id)


# --------------------------------------------------------------------------- events


async def post_events(client: Any, events: list[Any]) -> None:
    """Deliver `events` (Prefect `Event`s) before returning: `POST /events` (a raw endpoint).

    The public alternatives, `prefect.events.emit_event` and `get_events_client().emit()`, only
    queue or send on a websocket that may still be connecting, and say nothing about arrival; the
    client has no method for this endpoint.
    """
    body = [event.model_dump(mode="json") for event in events]
    await client.request("POST", "/events", json=body)


def events_subscriber(
    filter: EventFilter | None = None, *, reconnection_attempts: int = 10
) -> PrefectEventSubscriber:
    """A websocket subscriber to the server's events that match `filter` (an async iterator).

    Internal: `prefect.events.clients.get_events_subscriber`, undocumented, with the parameter
    `reconnection_attempts`. There is no public subscription API; polling `read_events` would
    miss the acknowledgements and queue changes this is used to wait for.
    """
    from prefect.events.clients import get_events_subscriber

    return get_events_subscriber(filter=filter, reconnection_attempts=reconnection_attempts)


# --------------------------------------------------------------------------- the server process


def create_final_app() -> Any:
    """Prefect's full server app (API, UI, services), the one `prefect server start` serves.

    Internal: `prefect.server.api.server.create_app(final=True)`. The public alternative,
    `prefect server start`, cannot wrap the app in the ASGI middleware of
    `fleet.core._server_main`.
    """
    from prefect.server.api.server import create_app

    return create_app(final=True)


#: Internal: the variable `prefect server start --no-services` sets for its server process, read by
#: `prefect.server.api.server.create_app` (a replica then runs no background services). The
#: public alternative, `prefect server start --no-services`, cannot serve the wrapped app of
#: `fleet.core._server_main`.
WEBSERVER_ONLY_ENV = "PREFECT__SERVER_WEBSERVER_ONLY"


async def run_all_services() -> None:
    """Run every enabled background service of Prefect's server until cancelled (no API).

    Internal: `prefect.cli._server_utils._run_all_services`, what `prefect server services start`
    runs. The public alternative, that command, cannot first apply
    `allow_scheduled_runs_on_sqlalchemy_21` in its process, and the scheduler runs there.
    """
    from prefect.cli._server_utils import _run_all_services

    await _run_all_services()


def allow_scheduled_runs_on_sqlalchemy_21() -> bool:
    """Let Prefect's scheduler insert runs under SQLAlchemy 2.1; True when patched.

    Internal: the `state` hybrid property of `prefect.server.database.orm_models.FlowRun`, given a
    `bulk_dml_setter` in place. The scheduler inserts its runs with one ORM `INSERT` whose rows
    carry a `state` key; Prefect inserts the states separately afterwards, and SQLAlchemy 2.0
    ignored the key. SQLAlchemy 2.1 refuses a hybrid in a bulk insert unless it has a `bulk_dml`
    function ("Can't evaluate bulk DML statement"), so every scheduler pass fails and deployment
    schedules never create a run. The function given here leaves the row as SQLAlchemy 2.0 did.
    The public alternative, pinning SQLAlchemy 2.0, made the server hang under load on SQLite.
    """
    from prefect.server.database import orm_models

    hybrid: Any = orm_models.FlowRun.__dict__.get("state")
    if not hasattr(hybrid, "bulk_dml_setter") or hybrid.bulk_dml_setter is not None:
        return False  # SQLAlchemy 2.0, or already given one

    def keep_row(cls: Any, mapping: Any, value: Any) -> None:
        """The state rows are inserted by Prefect after the runs; nothing to add here."""

    # set in place: SQLAlchemy 2.1.9's own `hybrid_property.bulk_dml` decorator raises TypeError
    hybrid.bulk_dml_setter = keep_row
    return True
