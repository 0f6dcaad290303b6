"""The agent's status publisher: the status document, its variable, status and heartbeat events.

The document (`resort_common.documents.AgentStatus`) is written to the resort's
`status_variable` on every change (debounced) and every `settings.heartbeat` seconds. Each
publication also emits `plate-resort.status` when the resort's summary changed, feeds the
incident edges of `device_agent.alerts`, and emits a heartbeat event every half heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from device_agent.alerts import AlertTracker
from device_agent.pacing import jittered
from device_agent.settings import AgentSettings
from resort_common.documents import AgentStatus
from resort_common.events import HEARTBEAT_EVENT, STATUS_EVENT
from resort_common.variables import set_variable

if TYPE_CHECKING:
    from device_agent.session import DeviceSession
    from device_agent.worker import ResortWorker

__all__ = ["ResortEvents", "StatusPublisher", "agent_status", "as_dict"]

logger = logging.getLogger(__name__)

STATUS_DEBOUNCE = 0.05  # coalesce bursts of changes
STATUS_TIMEOUT = 10.0  # seconds one status publication may take before it is retried


def as_dict(obj: Any) -> dict[str, Any] | None:
    """A health reading (or any record) as a plain dict for the status document."""
    if obj is None:
        return None
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return dict(vars(obj))


def _profile_value(session: DeviceSession | None, name: str) -> float | None:
    """The speed or acceleration the driver uses now (None before the device is open)."""
    value = getattr(session.driver, name, None) if session is not None else None
    return float(value) if isinstance(value, int | float) else None


def agent_status(
    name: str, online: bool, session: DeviceSession | None, worker: ResortWorker | None
) -> AgentStatus:
    """The status document of resort `name` as its session and worker see it now."""
    s = session
    return AgentStatus(
        name=name,
        online=online,
        connected=bool(s and s.connected),
        position=s.position if s else None,
        active_hotel=s.active_hotel if s else None,
        moving=bool(s and s.moving),
        estopped=bool(s and s.estopped),
        estop_reason=s.estop_reason if s else None,
        estop_confirmed=s.estop_confirmed if s else None,
        fleet_latch_known=bool(s and s.fleet_latch_known),
        power_losses=getattr(s.driver, "power_losses", 0) if s else 0,
        faulted=bool(s is None or s.faulted),
        last_error=(s.last_error or None) if s else None,
        health=s.health if s else None,
        speed=_profile_value(s, "speed"),
        acceleration=_profile_value(s, "acceleration"),
        current_run=s.current_run if s else None,
        events_connected=bool(worker and worker.events_connected),
        runs_executed=worker.runs_executed if worker else 0,
        runs_claimed_from_events=worker.claims_from_events if worker else 0,
        pid=os.getpid(),
        updated_at=datetime.datetime.now(datetime.UTC),
    )


class ResortEvents:
    """Emits the agent's events with the resort as their resource."""

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings

    def resource(self) -> dict[str, str]:
        """The resort as the resource of this agent's events."""
        return {
            "prefect.resource.id": self.settings.resource_id,
            "prefect.resource.name": self.settings.device.name,
        }

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        """Emit `name` (queued on Prefect's events websocket; a failure is only logged)."""
        from prefect.events import emit_event

        try:
            emit_event(name, resource=self.resource(), payload=payload)
        except Exception:
            logger.debug("could not emit %s", name, exc_info=True)


class StatusPublisher:
    """Publishes the status document on every change and every heartbeat.

    Args:
        settings: the agent's settings (status variable, heartbeat, worker name).
        document: builds the status document as it is now.
        alerts: the incident tracker fed with every online publication.
        events: the emitter of status and heartbeat events.
    """

    def __init__(
        self,
        settings: AgentSettings,
        document: Callable[[], AgentStatus],
        alerts: AlertTracker,
        events: ResortEvents,
    ) -> None:
        self.settings = settings
        self.document = document
        self.alerts = alerts
        self.events = events
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._last_summary: tuple[Any, ...] | None = None
        self._last_heartbeat_event = 0.0
        # publications of the status loop: started / finished (see `publish_now`)
        self._publications = threading.Lock()
        self._publications_started = 0
        self._publications_done = 0

    def bind(self) -> None:
        """Attach to the running event loop (before `run` starts)."""
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def notify(self) -> None:
        """A status field changed (any thread): publish soon."""
        loop, event = self._loop, self._changed
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    async def publish_current(self, client: Any) -> None:
        """Publish the status as it is now, counted so `publish_now` can wait for it."""
        with self._publications:
            self._publications_started += 1
        try:
            await self._publish(client, self.document())
        finally:
            with self._publications:
                self._publications_done += 1

    async def _publish(self, client: Any, status: AgentStatus) -> None:
        document = status.to_document()
        await set_variable(client, self.settings.status_variable, document)
        health = document.get("health") or {}
        summary = (
            document["online"],
            document["connected"],
            document["estopped"],
            document["faulted"],
            document["active_hotel"],  # a move's end (moving alone would add two events a move)
            document["last_error"],
            tuple(health.get("hardware_errors") or ()),
        )
        if summary != self._last_summary:
            self._last_summary = summary
            self.events.emit(STATUS_EVENT, {k: v for k, v in document.items() if k != "health"})
        if not document["online"]:
            return
        self.alerts.observe(document)
        self.alerts.beat()
        now = time.monotonic()
        if now - self._last_heartbeat_event >= self.settings.heartbeat / 2:
            self._last_heartbeat_event = now
            self.events.emit(HEARTBEAT_EVENT, self._beat_payload(document))

    def _beat_payload(self, document: dict[str, Any]) -> dict[str, Any]:
        return {
            "worker": self.settings.worker_name,
            "host": self.alerts.host,
            "pid": document["pid"],
            "connected": document["connected"],
            "run": document["current_run"],
        }

    async def run(
        self, client: Any, on_heartbeat: Callable[[Any], Awaitable[None]] | None = None
    ) -> None:
        """The status loop: publish on every change and every heartbeat, until cancelled.

        Args:
            client: the agent's async API client.
            on_heartbeat: called with the client after each heartbeat publication (bounded).
        """
        assert self._changed is not None
        while True:
            heartbeat = False
            try:
                await asyncio.wait_for(self._changed.wait(), jittered(self.settings.heartbeat))
                await asyncio.sleep(STATUS_DEBOUNCE)
            except TimeoutError:
                heartbeat = True
            self._changed.clear()
            try:
                # bounded: a request sent as the server went down can hang until the client's
                # read timeout (60 s), and the published status would go stale meanwhile
                await asyncio.wait_for(self.publish_current(client), STATUS_TIMEOUT)
                if heartbeat and on_heartbeat is not None:
                    await asyncio.wait_for(on_heartbeat(client), STATUS_TIMEOUT)
            except Exception as exc:
                logger.warning("status publication failed: %r; retrying in 1 s", exc)
                await asyncio.sleep(1.0)
                self._changed.set()

    async def publish_now(self, client: Any) -> None:
        """Write the status document now (bounded; the status loop covers a failure).

        A publication of the status loop that read the status before the latch changed would
        land after this write and undo it, so those are waited for first (bounded).
        """
        if client is None:
            return
        with self._publications:
            started = self._publications_started
        deadline = time.monotonic() + STATUS_TIMEOUT
        while self._publications_done < started and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        try:
            await asyncio.wait_for(
                set_variable(client, self.settings.status_variable, self.document().to_document()),
                STATUS_TIMEOUT,
            )
        except Exception as exc:
            logger.warning("status before the e-stop acknowledgement failed: %r", exc)
