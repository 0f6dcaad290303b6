"""The device agent's lifecycle: open the resort once, serve its queue, stop it safely.

`run_agent(settings)` is what `device-agent run` executes on a Pi:

1. start the pty emulator as a child process when the resort is emulated (never imported);
2. read the Pi's e-stop latch (`<state_dir>/estop-latch.json`) *before* the port is opened;
3. open the driver (retrying while the port is missing or held by another process) without ever
   switching torque on, and read the real position; a latched resort gets torque off at once;
4. read the fleet's e-stop latch variable; until that succeeds (server unreachable) torque is off
   and motion is refused, and the agent keeps trying;
5. serve the resort's work queue with `ResortWorker` (in-process runs, event wake-up);
6. listen for `plate-resort.estop` / `plate-resort.estop-clear` events on a thread of its own,
   so a stop never waits behind a move: torque off at once, latch (memory and the Pi's file),
   acknowledge with `plate-resort.estopped` saying whether Torque Enable read back 0
   (`confirmed`); an unconfirmed stop is retried until it is, and acknowledged again then;
7. publish the status JSON to the `status_variable` on every change and every
   `settings.heartbeat` seconds, with a heartbeat event and the incident edges of
   `device_agent.alerts` (hardware error, link lost, e-stop; back from offline);
8. watch the link: on serial loss runs fail fast, status shows faulted, the port is retried
   every `RECONNECT_INTERVAL` seconds and the agent resumes when it is back (torque stays off
   until the next move; a latched resort is stopped again after the reconnect);
9. on SIGTERM/SIGINT: stop taking runs, let a running move finish within `shutdown_grace`
   (else halt it), leave no run Running, publish offline and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import datetime
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from device_agent.alerts import AlertTracker
from device_agent.emulator_child import EmulatorChild
from device_agent.errors import DeviceError, PortLostError
from device_agent.pi_latch import LatchFile
from device_agent.session import DeviceSession, use_session
from device_agent.settings import AgentSettings
from resort_common.events import (
    ESTOP_CLEAR_EVENT,
    ESTOP_CLEARED_EVENT,
    ESTOP_EVENT,
    ESTOPPED_EVENT,
    HEARTBEAT_EVENT,
    STATUS_EVENT,
    STOPPED_EVENT,
)
from resort_common.variables import read_json_variable, set_variable

__all__ = [
    "Agent",
    "run_agent",
]

logger = logging.getLogger(__name__)

RECONNECT_INTERVAL = 1.0  # seconds between attempts to reopen a lost port
LATCH_READ_TIMEOUT = 5.0  # seconds one read of the fleet's latch may take at start-up
LATCH_RETRY_MAX = 10.0  # seconds between start-up reads of the fleet's latch, at most
STATUS_DEBOUNCE = 0.05  # coalesce bursts of changes
STATUS_TIMEOUT = 10.0  # seconds one status publication may take before it is retried
# E-stop events older than the subscription minus this are replays (the latch variable covers
# them); the slack tolerates small clock differences between the CLI host and the Pi.
REPLAY_SLACK = datetime.timedelta(seconds=5)


def _profile_value(session: DeviceSession | None, name: str) -> float | None:
    """The speed or acceleration the driver uses now (None before the device is open)."""
    value = getattr(session.driver, name, None) if session is not None else None
    return float(value) if isinstance(value, int | float) else None


def _text(value: Any) -> str | None:
    return str(value) if value else None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _as_dict(obj: Any) -> dict[str, Any] | None:
    if obj is None:
        return None
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return dict(vars(obj))


class Agent:
    """One resort's agent: device, worker, e-stop listener, status publisher, link monitor.

    Args:
        settings: the agent's settings (`device_agent.settings.AgentSettings`).
    """

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.session: DeviceSession | None = None
        self.worker: Any = None
        self.emulator = EmulatorChild()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._shutdown = threading.Event()
        self._online = False
        self._last_summary: tuple[Any, ...] | None = None
        self._last_heartbeat_event = 0.0
        # publications of the status loop: started / finished (see `_publish_now`)
        self._publications = threading.Lock()
        self._publications_started = 0
        self._publications_done = 0
        self.alerts = AlertTracker(
            settings.state_dir / "alerts.json",
            worker=settings.worker_name,
            emit=self._emit,
            offline_after=settings.offline_after,
        )
        self._estop_thread: threading.Thread | None = None
        self._monitor_thread: threading.Thread | None = None
        self.estop_listener_connected = False

    # ---------------------------------------------------------------- device
    def start_emulator(self) -> None:
        """Start (or reuse) the pty emulator when the resort is emulated (`EmulatorChild`)."""
        if self.settings.emulator is not None:
            self.emulator.start(self.settings.device, self.settings.emulator)

    def stop_emulator(self) -> None:
        """Stop the emulator this agent started or adopted (never one started on its own)."""
        self.emulator.stop()

    def open_device(self) -> DeviceSession:
        """Read the Pi's latch, build the driver and try to connect (never torque on).

        A missing or busy port leaves the session faulted (the link monitor retries it); a
        latched resort gets torque off as soon as the port is open.
        """
        from device_agent.driver import ResortDriver
        from device_agent.transport import SdkTransport

        device = self.settings.device
        transport = SdkTransport(device.serial_port, device.baudrate, device.motor_id)
        driver = ResortDriver(transport, device)
        session = DeviceSession(
            driver,
            name=device.name,
            serial_port=device.serial_port,
            on_change=self.notify,
            latch_file=LatchFile.in_state_dir(
                self.settings.state_dir, resort=device.name, serial_port=device.serial_port
            ),
            fleet_latch_known=False,
            on_confirmed=self._stop_confirmed,
        )
        session.restore_pi_latch()  # before the port is opened
        try:
            driver.connect()
            if session.estopped:
                session.ensure_torque_off()
            self._settle(session)
            self._read_position(session)
        except DeviceError as exc:
            if not isinstance(exc, PortLostError) and "model" in str(exc):
                raise  # wrong servo: a configuration error, not a transient one
            # a missing or busy port, or a servo that did not answer in time (a loaded Pi):
            # start faulted, the link monitor reconnects
            logger.warning("%s: cannot open %s yet: %s", device.name, device.serial_port, exc)
            session.mark_link_error(exc)
        self.session = session
        return session

    def _settle(self, session: DeviceSession) -> None:
        """Wait (bounded) for a move still running from before a restart, so the reported
        position is where the carousel stopped, not where it was passing."""
        deadline = time.monotonic() + self.settings.device.move_timeout
        while time.monotonic() < deadline:
            try:
                if not session.driver.request_health().moving:
                    return
            except DeviceError:
                return
            time.sleep(0.1)

    def _read_position(self, session: DeviceSession) -> None:
        driver = session.driver
        position = driver.request_position()
        session.update(
            connected=True,
            position=round(position, 3),
            active_hotel=driver.request_active_hotel(),
            health=_as_dict(driver.request_health()),
        )
        logger.info(
            "%s: at %.2f deg (%s)", session.name, position, session.active_hotel or "no hotel"
        )

    def _monitor(self) -> None:
        """Link monitor thread: reconnect a lost port; probe the idle device now and then."""
        session = self.session
        assert session is not None
        last_probe = time.monotonic()
        while not self._shutdown.wait(RECONNECT_INTERVAL):
            if not session.connected:
                if not session.motion_lock.acquire(blocking=False):
                    continue
                try:
                    session.driver.reconnect()  # never switches torque on
                    if session.estopped:
                        session.ensure_torque_off()
                    self._read_position(session)
                    session.update(last_error=None)
                    logger.info("%s: serial link back on %s", session.name, session.serial_port)
                except Exception as exc:
                    logger.debug("%s: reconnect failed: %s", session.name, exc)
                finally:
                    session.motion_lock.release()
                continue
            if time.monotonic() - last_probe < self.settings.heartbeat:
                continue
            last_probe = time.monotonic()
            if session.current_run is not None or not session.motion_lock.acquire(blocking=False):
                continue
            try:
                self._read_position(session)
            except DeviceError as exc:
                logger.warning("%s: probe failed: %s", session.name, exc)
                session.mark_link_error(exc)
            except Exception:
                logger.exception("%s: probe failed", session.name)
            finally:
                session.motion_lock.release()

    # ---------------------------------------------------------------- status
    def notify(self) -> None:
        """A status field changed (any thread): publish soon."""
        loop, event = self._loop, self._changed
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    def status(self) -> dict[str, Any]:
        """The status document published to the status variable."""
        s = self.session
        worker = self.worker
        return {
            "name": self.settings.device.name,
            "online": self._online,
            "connected": bool(s and s.connected),
            "position": s.position if s else None,
            "active_hotel": s.active_hotel if s else None,
            "moving": bool(s and s.moving),
            "estopped": bool(s and s.estopped),
            "estop_reason": s.estop_reason if s else None,
            "estop_confirmed": s.estop_confirmed if s else None,
            "fleet_latch_known": bool(s and s.fleet_latch_known),
            "power_losses": getattr(s.driver, "power_losses", 0) if s else 0,
            "faulted": bool(s is None or s.faulted),
            "last_error": (s.last_error or None) if s else None,
            "health": s.health if s else None,
            "speed": _profile_value(s, "speed"),
            "acceleration": _profile_value(s, "acceleration"),
            "current_run": s.current_run if s else None,
            "events_connected": bool(worker and worker.events_connected),
            "runs_executed": worker.runs_executed if worker else 0,
            "runs_claimed_from_events": worker.claims_from_events if worker else 0,
            "pid": os.getpid(),
            "updated_at": _now().isoformat(),
        }

    async def _publish_current(self, client: Any) -> None:
        """Publish the status as it is now, counted so `_publish_now` can wait for it."""
        with self._publications:
            self._publications_started += 1
        try:
            await self._publish(client, self.status())
        finally:
            with self._publications:
                self._publications_done += 1

    async def _publish(self, client: Any, status: dict[str, Any]) -> None:
        await set_variable(client, self.settings.status_variable, status)
        health = status.get("health") or {}
        summary = (
            status["online"],
            status["connected"],
            status["estopped"],
            status["faulted"],
            status["active_hotel"],  # a move's end (moving alone would add two events a move)
            status["last_error"],
            tuple(health.get("hardware_errors") or ()),
        )
        if summary != self._last_summary:
            self._last_summary = summary
            self._emit(STATUS_EVENT, {k: v for k, v in status.items() if k != "health"})
        if not status["online"]:
            return
        self.alerts.observe(status)
        self.alerts.beat()
        now = time.monotonic()
        if now - self._last_heartbeat_event >= self.settings.heartbeat / 2:
            self._last_heartbeat_event = now
            self._emit(HEARTBEAT_EVENT, self._beat_payload(status))

    def _beat_payload(self, status: dict[str, Any]) -> dict[str, Any]:
        return {
            "worker": self.settings.worker_name,
            "host": self.alerts.host,
            "pid": status["pid"],
            "connected": status["connected"],
            "run": status["current_run"],
        }

    def _resource(self) -> dict[str, str]:
        """The resort as the resource of this agent's events."""
        return {
            "prefect.resource.id": self.settings.resource_id,
            "prefect.resource.name": self.settings.device.name,
        }

    def _emit(self, name: str, payload: dict[str, Any]) -> None:
        from prefect.events import emit_event

        try:
            emit_event(name, resource=self._resource(), payload=payload)
        except Exception:
            logger.debug("could not emit %s", name, exc_info=True)

    async def _status_loop(self, client: Any) -> None:
        assert self._changed is not None
        while True:
            heartbeat = False
            try:
                await asyncio.wait_for(self._changed.wait(), self.settings.heartbeat)
                await asyncio.sleep(STATUS_DEBOUNCE)
            except TimeoutError:
                heartbeat = True
            self._changed.clear()
            try:
                # bounded: a request sent as the server went down can hang until the client's
                # read timeout (60 s), and the published status would go stale meanwhile
                await asyncio.wait_for(self._publish_current(client), STATUS_TIMEOUT)
                if heartbeat:  # the e-stop listener applies latches live; this is the backstop
                    await asyncio.wait_for(self._sync_latch(client), STATUS_TIMEOUT)
            except Exception as exc:
                logger.warning("status publication failed: %r; retrying in 1 s", exc)
                await asyncio.sleep(1.0)
                self._changed.set()

    async def _sync_latch(self, client: Any) -> None:
        """Apply the latch variable (covers e-stop events lost while disconnected).

        A command already applied here is skipped: this read may have been answered before a
        newer command arrived (`DeviceSession.apply_latch`). A clear read here releases the
        resort only if it is newer than the Pi's latch.
        """
        latch = await read_json_variable(client, self.settings.estop_variable)
        session = self.session
        if session is None:
            return
        if not session.fleet_latch_known:
            session.fleet_latch_known = True
            logger.info("%s: fleet e-stop latch read: %s", session.name, latch or "never set")
            session.update()
        if not latch:
            return
        was_stopped = session.estopped
        await asyncio.to_thread(
            session.apply_latch,
            bool(latch.get("estopped")),
            str(latch.get("reason") or "latched"),
            latch.get("command_id"),
            at=_text(latch.get("at")),
            by=str(latch.get("by") or ""),
        )
        if session.estopped and not was_stopped:
            logger.warning("%s: latch variable says e-stopped: stopped", session.name)

    async def _await_fleet_latch(self, client: Any, stop_requested: asyncio.Event) -> bool:
        """Read the fleet's latch before serving; until then torque is off and motion refused.

        Returns:
            False when a stop was requested before the latch could be read.
        """
        session = self.session
        assert session is not None
        delay = 1.0
        warned = False
        while True:
            try:
                await asyncio.wait_for(self._sync_latch(client), LATCH_READ_TIMEOUT)
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

    # ---------------------------------------------------------------- e-stop
    async def _sync_latch_once(self, client: Any) -> None:
        try:
            await self._sync_latch(client)
        except Exception as exc:
            logger.info("could not read the e-stop latch: %s", exc)

    def _estop_main(self) -> None:
        asyncio.run(self._estop_listen())

    async def _estop_listen(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

        session = self.session
        assert session is not None
        event_filter = EventFilter(
            event=EventNameFilter(name=[ESTOP_EVENT, ESTOP_CLEAR_EVENT]),
            resource=EventResourceFilter(id=[self.settings.resource_id]),
        )
        backoff = 0.5
        while not self._shutdown.is_set():
            since = _now() - REPLAY_SLACK
            try:
                async with (
                    get_client() as client,
                    get_events_subscriber(
                        filter=event_filter, reconnection_attempts=3
                    ) as subscriber,
                ):
                    self.estop_listener_connected = True
                    backoff = 0.5
                    await self._sync_latch_once(client)  # events missed while disconnected
                    async for event in subscriber:
                        if event.occurred < since:
                            continue
                        await self._apply_event(
                            session, event.event, dict(event.payload or {}), client
                        )
            except Exception as exc:
                logger.info("e-stop subscription dropped: %s", exc)
            self.estop_listener_connected = False
            if self._shutdown.wait(backoff):
                return
            backoff = min(backoff * 2, 10.0)

    async def _apply_event(
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
                await self._publish_now(client)
                self._emit(ESTOPPED_EVENT, self._stop_ack(session, payload))
        elif name == ESTOP_CLEAR_EVENT:
            applied = session.apply_latch(False, "", command_id, at=at, live=True, by=by)
            if applied and not session.estopped:
                logger.warning("%s: emergency stop cleared", session.name)
            if not session.estopped:
                await self._publish_now(client)
                self._emit(ESTOP_CLEARED_EVENT, payload)

    async def _publish_now(self, client: Any) -> None:
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
                set_variable(client, self.settings.status_variable, self.status()),
                STATUS_TIMEOUT,
            )
        except Exception as exc:
            logger.warning("status before the e-stop acknowledgement failed: %r", exc)

    @staticmethod
    def _stop_ack(session: DeviceSession, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            **payload,
            "position": session.position,
            "confirmed": bool(session.estop_confirmed),
        }

    def _stop_confirmed(self, command_id: str | None) -> None:
        """A stop that was not confirmed at first now reads torque off: acknowledge it again."""
        session = self.session
        if session is not None and session.estopped:
            self._emit(ESTOPPED_EVENT, self._stop_ack(session, {"command_id": command_id}))

    # ---------------------------------------------------------------- main
    async def serve(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        from prefect.client.orchestration import get_client

        from device_agent.worker import ResortWorker

        settings = self.settings
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, stop_requested.set)

        session = self.session
        assert session is not None
        self._monitor_thread = threading.Thread(
            target=self._monitor, name="link-monitor", daemon=True
        )
        self._monitor_thread.start()
        async with get_client() as client:
            if not await self._await_fleet_latch(client, stop_requested):
                self._shutdown.set()
                return 0
            worker = ResortWorker(
                settings.work_pool,
                [settings.work_queue],
                settings.worker_name,
                session=session,
                poll_interval=settings.poll_interval,
                create_pool_if_not_found=False,
            )
            self.worker = worker
            self._estop_thread = threading.Thread(
                target=contextvars.copy_context().run,
                args=(self._estop_main,),
                name="estop",
                daemon=True,
            )
            self._estop_thread.start()
            status_task = asyncio.create_task(self._status_loop(client))
            async with worker:
                self._online = True
                self.notify()
                serve_task = asyncio.create_task(worker.serve())
                stop_task = asyncio.create_task(stop_requested.wait())
                _done, _ = await asyncio.wait(
                    {serve_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
                )
                logger.info("%s: stopping (no new runs)", settings.worker_name)
                worker.stop()
                outcome = await worker.drain(
                    settings.shutdown_grace,
                    f"Agent {settings.worker_name} stopped (SIGTERM) during the run; "
                    "the motor was halted.",
                )
                if outcome:
                    logger.warning("%s", outcome)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(serve_task, 10)
                if serve_task.done() and serve_task.exception() is not None:
                    logger.error("worker stopped: %s", serve_task.exception())
                stop_task.cancel()
            self._online = False
            self._shutdown.set()
            status_task.cancel()
            with contextlib.suppress(BaseException):
                await status_task
            with contextlib.suppress(Exception):
                await self._publish_current(client)
            await self._report_stop(client)
        return 0

    async def _report_stop(self, client: Any) -> None:
        """Tell the fleet this agent stops on purpose (no offline alert follows), bounded."""
        from prefect.events import Event

        self.alerts.stopped()
        event = Event(
            event=STOPPED_EVENT,
            resource=self._resource(),
            payload={"worker": self.settings.worker_name, "host": self.alerts.host},
        )
        try:
            # posted, not queued on the events websocket: the process exits right after
            await asyncio.wait_for(
                client.request("POST", "/events", json=[event.model_dump(mode="json")]),
                STATUS_TIMEOUT,
            )
        except Exception as exc:
            logger.warning("could not report the clean stop: %r", exc)

    def close(self) -> None:
        """Stop threads, close the port and the emulator child."""
        self._shutdown.set()
        if self.session is not None:
            with contextlib.suppress(Exception):
                self.session.driver.close()
        self.stop_emulator()


def run_agent(settings: AgentSettings) -> int:
    """Run the agent for `settings` until SIGTERM/SIGINT; returns the exit code (0)."""
    settings_cm: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if settings.api_url:
        os.environ["PREFECT_API_URL"] = settings.api_url
        if "prefect.settings" in sys.modules:  # already imported: env alone is too late
            from prefect.settings import temporary_settings

            settings_cm = temporary_settings(updates={"api.url": settings.api_url})
    logging.getLogger("httpx").setLevel(logging.WARNING)
    agent = Agent(settings)
    try:
        agent.start_emulator()
        session = agent.open_device()
        with settings_cm, use_session(session):
            return asyncio.run(agent.serve())
    finally:
        agent.close()
