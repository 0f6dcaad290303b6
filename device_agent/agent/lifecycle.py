"""The device agent's lifecycle: open the resort once, serve its queue, stop it safely.

`run_agent(settings)` is what `device-agent run` executes on a Pi:

1. start the pty emulator as a child process when the resort is emulated (never imported);
2. read the Pi's e-stop latch (`<state_dir>/estop-latch.json`) *before* the port is opened;
3. open the driver (retrying while the port is missing or held by another process) without ever
   switching torque on, and read the real position; a latched resort gets torque off at once;
4. read the fleet's e-stop latch variable; until that succeeds (server unreachable) torque is off
   and motion is refused, and the agent keeps trying (`EstopListener`);
5. serve the resort's work queue with `ResortWorker` (in-process runs, event wake-up);
6. listen for e-stop commands on a thread of its own (`EstopListener`);
7. publish the status document on every change and every heartbeat (`StatusPublisher`);
8. watch the link: reconnect a lost port, probe the idle device (`LinkMonitor`);
9. on SIGTERM/SIGINT: stop taking runs, let a running move finish within `shutdown_grace`
   (else halt it), leave no run Running, publish offline and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from device_agent.agent.estop import EstopListener
from device_agent.agent.link_monitor import LinkMonitor
from device_agent.agent.status import (
    STATUS_TIMEOUT,
    ResortEvents,
    StatusPublisher,
    agent_status,
    as_dict,
)
from device_agent.alerts import AlertTracker
from device_agent.emulator_child import EmulatorChild
from device_agent.errors import DeviceError, PortLostError
from device_agent.pi_latch import LatchFile
from device_agent.prefect_adapter import post_events
from device_agent.session import DeviceSession, use_session
from device_agent.settings import AgentSettings
from resort_common.documents import AgentStatus
from resort_common.events import STOPPED_EVENT

if TYPE_CHECKING:
    from device_agent.worker import ResortWorker

__all__ = ["Agent", "run_agent"]

logger = logging.getLogger(__name__)

#: an idle position that moved less than this is noise (one encoder tick is 0.088 deg); a larger
#: change (the carousel turned by hand) is published at once
POSITION_NOISE_DEG = 0.5


def _hardware_errors(health: dict[str, Any] | None) -> tuple[str, ...]:
    return tuple((health or {}).get("hardware_errors") or ())


class Agent:
    """One resort's agent: device, worker, e-stop listener, status publisher, link monitor.

    Args:
        settings: the agent's settings (`device_agent.settings.AgentSettings`).
    """

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.session: DeviceSession | None = None
        self.worker: ResortWorker | None = None
        self.emulator = EmulatorChild()
        self.online = False
        self._shutdown = threading.Event()
        self.events = ResortEvents(settings)
        self.alerts = AlertTracker(
            settings.state_dir / "alerts.json",
            worker=settings.worker_name,
            emit=self.events.emit,
            offline_after=settings.offline_after,
        )
        self.publisher = StatusPublisher(settings, self.status, self.alerts, self.events)
        self.estop = EstopListener(
            settings, lambda: self.session, self._shutdown, self.publisher, self.events
        )

    def status(self) -> AgentStatus:
        """The status document published to the status variable."""
        return agent_status(self.settings.device.name, self.online, self.session, self.worker)

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
            on_change=self.publisher.notify,
            latch_file=LatchFile.in_state_dir(
                self.settings.state_dir, resort=device.name, serial_port=device.serial_port
            ),
            fleet_latch_known=False,
            on_confirmed=self.estop.stop_confirmed,
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

    @staticmethod
    def _reading(session: DeviceSession) -> dict[str, Any]:
        """The idle device's status fields as read now: position, hotel and health."""
        driver = session.driver
        return {
            "connected": True,
            "position": round(driver.request_position(), 3),
            "active_hotel": driver.request_active_hotel(),
            "health": as_dict(driver.request_health()),
        }

    @staticmethod
    def _publish_reading(session: DeviceSession, fields: dict[str, Any]) -> None:
        session.update(**fields)
        logger.info(
            "%s: at %.2f deg (%s)",
            session.name,
            fields["position"],
            fields["active_hotel"] or "no hotel",
        )

    def _read_position(self, session: DeviceSession) -> None:
        self._publish_reading(session, self._reading(session))

    def _probe_position(self, session: DeviceSession) -> None:
        """The link monitor's read of the idle device: publish at once only what changed.

        A link back, a new hotel, a hardware error or a carousel turned by hand (more than
        `POSITION_NOISE_DEG`) is published now; readings that only drifted (temperature,
        voltage, encoder noise) go out with the next heartbeat publication, not a write of their
        own (50 idle agents would otherwise add one server write each per heartbeat).
        """
        fields = self._reading(session)
        position = fields["position"]
        moved = session.position is None or abs(position - session.position) > POSITION_NOISE_DEG
        changed = (
            not session.connected
            or fields["active_hotel"] != session.active_hotel
            or _hardware_errors(fields["health"]) != _hardware_errors(session.health)
        )
        if moved or changed:
            self._publish_reading(session, fields)
        else:
            session.note(**fields)

    # ---------------------------------------------------------------- main
    async def serve(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        from prefect.client.orchestration import get_client

        from device_agent.worker import ResortWorker

        settings = self.settings
        loop = asyncio.get_running_loop()
        self.publisher.bind()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_requested.set)

        session = self.session
        assert session is not None
        LinkMonitor(session, self._shutdown, settings.heartbeat, self._probe_position).start()
        async with get_client() as client:
            if not await self.estop.await_fleet_latch(client, stop_requested):
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
            self.estop.start()
            status_task = asyncio.create_task(
                self.publisher.run(client, on_heartbeat=self.estop.sync_latch)
            )
            async with worker:
                self.online = True
                self.publisher.notify()
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
            self.online = False
            self._shutdown.set()
            status_task.cancel()
            with contextlib.suppress(BaseException):
                await status_task
            with contextlib.suppress(Exception):
                await self.publisher.publish_current(client)
            await self._report_stop(client)
        return 0

    async def _report_stop(self, client: Any) -> None:
        """Tell the fleet this agent stops on purpose (no offline alert follows), bounded."""
        from prefect.events import Event

        self.alerts.stopped()
        event = Event(
            event=STOPPED_EVENT,
            resource=self.events.resource(),
            payload={"worker": self.settings.worker_name, "host": self.alerts.host},
        )
        try:
            # posted, not queued on the events websocket: the process exits right after
            await post_events(client, [event], STATUS_TIMEOUT)
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
    """Run the agent for `settings` until SIGTERM/SIGINT; returns the exit code (0).

    `settings.api_url`, when set, is the Prefect API of everything the agent does (its threads
    run in copies of this context).
    """
    from prefect.settings import temporary_settings

    settings_cm: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if settings.api_url:
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
