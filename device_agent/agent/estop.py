"""The agent's e-stop listener and the fleet's latch variable, applied to the device session.

A thread of its own subscribes to `plate-resort.estop` / `plate-resort.estop-clear` for the
resort, so a stop never waits behind a move: torque off at once, latch (memory and the Pi's
file), acknowledge with `plate-resort.estopped` saying whether Torque Enable read back 0
(`confirmed`); an unconfirmed stop is retried by the session and acknowledged again once it is.
The fleet's latch variable (`resort_common.documents.EstopLatch`) is read at start-up (motion is
refused until it has been), on every (re)connect of the subscription and with every status
heartbeat; each command is applied once (`device_agent.latch.LatchLedger`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime
import logging
import threading
from collections.abc import Callable
from typing import Any

from device_agent.agent.status import ResortEvents, StatusPublisher
from device_agent.prefect_adapter import subscribe_events
from device_agent.session import DeviceSession
from device_agent.settings import AgentSettings
from resort_common.documents import EstopLatch
from resort_common.events import (
    ESTOP_CLEAR_EVENT,
    ESTOP_CLEARED_EVENT,
    ESTOP_EVENT,
    ESTOPPED_EVENT,
)

__all__ = ["EstopListener"]

logger = logging.getLogger(__name__)

LATCH_READ_TIMEOUT = 5.0  # seconds one read of the fleet's latch may take at start-up
LATCH_RETRY_MAX = 10.0  # seconds between start-up reads of the fleet's latch, at most
# E-stop events older than the subscription minus this are replays (the latch variable covers
# them); the slack tolerates small clock differences between the CLI host and the Pi.
REPLAY_SLACK = datetime.timedelta(seconds=5)


def _text(value: Any) -> str | None:
    return str(value) if value else None


class EstopListener:
    """Applies e-stop commands (events and the latch variable) to the agent's device session.

    Args:
        settings: the agent's settings (latch variable, resource id).
        session: returns the agent's device session (None before it is open).
        shutdown: set when the agent stops; the listener thread then exits.
        publisher: writes the status before each acknowledgement.
        events: emits the acknowledgements.
    """

    def __init__(
        self,
        settings: AgentSettings,
        session: Callable[[], DeviceSession | None],
        shutdown: threading.Event,
        publisher: StatusPublisher,
        events: ResortEvents,
    ) -> None:
        self.settings = settings
        self.session = session
        self.shutdown = shutdown
        self.publisher = publisher
        self.events = events
        self.connected = False
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- latch variable
    async def sync_latch(self, client: Any) -> None:
        """Apply the latch variable (covers e-stop events lost while disconnected).

        A command already applied here is skipped: this read may have been answered before a
        newer command arrived (`DeviceSession.apply_latch`). A clear read here releases the
        resort only if it is newer than the Pi's latch.
        """
        variable = await client.read_variable_by_name(self.settings.estop_variable)
        latch = EstopLatch.parse(variable.value if variable is not None else None)
        if latch is not None and not latch.model_fields_set:
            latch = None  # an empty document: never set
        session = self.session()
        if session is None:
            return
        if not session.fleet_latch_known:
            session.fleet_latch_known = True
            logger.info(
                "%s: fleet e-stop latch read: %s",
                session.name,
                latch.to_document() if latch is not None else "never set",
            )
            session.update()
        if latch is None:
            return
        was_stopped = session.estopped
        await asyncio.to_thread(
            session.apply_latch,
            latch.estopped,
            latch.reason or "latched",
            latch.command_id,
            at=latch.at or None,
            by=latch.by or "",
        )
        if session.estopped and not was_stopped:
            logger.warning("%s: latch variable says e-stopped: stopped", session.name)

    async def await_fleet_latch(self, client: Any, stop_requested: asyncio.Event) -> bool:
        """Read the fleet's latch before serving; until then torque is off and motion refused.

        Returns:
            False when a stop was requested before the latch could be read.
        """
        session = self.session()
        assert session is not None
        delay = 1.0
        warned = False
        while True:
            try:
                await asyncio.wait_for(self.sync_latch(client), LATCH_READ_TIMEOUT)
                if warned:
                    session.update(last_error=None)
                return True
            except Exception as exc:
                problem = f"cannot read the fleet's e-stop latch ({exc!r}); motion refused"
                if not warned:
                    warned = True
                    logger.error("%s: %s; torque off until it can", session.name, problem)
                    if session.connected:
                        await asyncio.to_thread(session.ensure_torque_off)
                session.note(last_error=problem)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_requested.wait(), delay)
            if stop_requested.is_set():
                return False
            delay = min(delay * 2, LATCH_RETRY_MAX)

    async def _sync_latch_once(self, client: Any) -> None:
        try:
            await self.sync_latch(client)
        except Exception as exc:
            logger.info("could not read the e-stop latch: %s", exc)

    # ---------------------------------------------------------------- events
    def start(self) -> None:
        """Start the listener thread (in a copy of the caller's context: its Prefect settings)."""
        self._thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._main,),
            name="estop",
            daemon=True,
        )
        self._thread.start()

    def _main(self) -> None:
        asyncio.run(self._listen())

    async def _listen(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

        session = self.session()
        assert session is not None
        event_filter = EventFilter(
            event=EventNameFilter(name=[ESTOP_EVENT, ESTOP_CLEAR_EVENT]),
            resource=EventResourceFilter(id=[self.settings.resource_id]),
        )
        backoff = 0.5
        while not self.shutdown.is_set():
            since = datetime.datetime.now(datetime.UTC) - REPLAY_SLACK
            try:
                async with get_client() as client, subscribe_events(event_filter) as subscriber:
                    self.connected = True
                    backoff = 0.5
                    await self._sync_latch_once(client)  # events missed while disconnected
                    async for event in subscriber:
                        if event.occurred < since:
                            continue
                        await self.apply_event(
                            session, event.event, dict(event.payload or {}), client
                        )
            except Exception as exc:
                logger.info("e-stop subscription dropped: %s", exc)
            self.connected = False
            if self.shutdown.wait(backoff):
                return
            backoff = min(backoff * 2, 10.0)

    async def apply_event(
        self, session: DeviceSession, name: str, payload: dict[str, Any], client: Any = None
    ) -> None:
        """Apply a stop or clear event once; acknowledge it while the resort is in that state.

        A replayed copy of a command applied before is not applied again: a replayed stop must not
        undo the clear that followed it. It is acknowledged again (a `fleet estop` waiting across
        the reconnect gets its answer) unless a newer command changed the state since. A stop's
        acknowledgement says whether Torque Enable read back 0 (`confirmed`). The status
        document is written before the acknowledgement, so whoever got the answer reads the new
        state (`fleet estop-clear r && fleet activate r B` finds the resort released).
        """
        command_id = payload.get("command_id")
        at, by = _text(payload.get("at")), str(payload.get("by") or "")
        if name == ESTOP_EVENT:
            reason = str(payload.get("reason") or "fleet estop")
            if session.apply_latch(
                True, reason, command_id, at=at, stop_again=True, live=True, by=by
            ):
                logger.warning("%s: EMERGENCY STOP (%s)", session.name, payload)
            if session.estopped:
                await self.publisher.publish_now(client)
                self.events.emit(ESTOPPED_EVENT, self._stop_ack(session, payload))
        elif name == ESTOP_CLEAR_EVENT:
            applied = session.apply_latch(False, "", command_id, at=at, live=True, by=by)
            if applied and not session.estopped:
                logger.warning("%s: emergency stop cleared", session.name)
            if not session.estopped:
                await self.publisher.publish_now(client)
                self.events.emit(ESTOP_CLEARED_EVENT, payload)

    @staticmethod
    def _stop_ack(session: DeviceSession, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            **payload,
            "position": session.position,
            "confirmed": bool(session.estop_confirmed),
        }

    def stop_confirmed(self, command_id: str | None) -> None:
        """A stop that was not confirmed at first now reads torque off: acknowledge it again."""
        session = self.session()
        if session is not None and session.estopped:
            self.events.emit(ESTOPPED_EVENT, self._stop_ack(session, {"command_id": command_id}))
