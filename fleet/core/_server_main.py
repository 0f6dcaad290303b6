"""Run Prefect's own server (API, UI, services): 503s say when to retry; SQLite writes queue.

`python -m fleet.core._server_main` is what `fleet server up` and the test fixtures start instead of
`prefect server start`. It serves exactly the app `prefect server start` serves
(`fleet.core.prefect_adapter.create_final_app`), with ASGI wrappers around it. With
`PREFECT__SERVER_WEBSERVER_ONLY=1` (the API replicas of `fleet server up --replicas N`) that app
runs no background services, as with `prefect server start --no-services`; they run once, in
`fleet.core._services_main`. A 503 without a
`Retry-After` header gets one: ``0.1`` s when 503s are rare, growing by 0.1 s with each other
503 of the last second (up to 2 s), so a lock storm still backs off.

Why: on SQLite a write that loses a lock race answers 503 ("database is locked"), and Prefect's
client then sleeps ``2**attempt`` seconds (2 s first) unless the server says otherwise. Measured on
this project's dispatch path, those retries turned a third of all run submissions into ~2.3 s
stalls. Prefect's client honours `Retry-After` (see `fleet.core.prefect_adapter`), so the
same retry happens 0.1 s later instead. PostgreSQL servers rarely answer 503 at all.
Set ``FLEET_SERVER_RETRY_AFTER=`` (empty) to serve the unmodified app, or a number of seconds to
change the base delay.

``FLEET_SERVER_TIMING_LOG=FILE`` also logs every request's start, duration and status
(`RequestTimingLog`), to see what sits on a dispatch path.

On SQLite the writing requests are also served one at a time (`SerializedWrites`): a request
whose transaction read before another request committed cannot write any more (SQLite answers
"database is locked" at once, whatever the busy timeout), so concurrent writers mostly produced
503s and retries. Measured on a 100-activation batch over 5 resorts (same box, A/B twice each):
makespan 109.5 / 114.8 s -> 78.2 / 78.3 s, 503 answers 402 -> 46 on a 50-operation batch, one
activation 2.3 -> 1.6-1.7 s. Reads and websockets are not held back. PostgreSQL servers are served
as they are. ``FLEET_SERVER_SERIALIZE_WRITES=0`` turns it off, ``=1`` forces it.

Not done, on purpose: beginning every SQLite write transaction ``IMMEDIATE`` instead. It removes
the 503s too, but Prefect opens nested sessions inside write transactions (e.g.
`PATCH /work_queues/{id}` emitting its status event), and those then wait on the outer
transaction's lock until the busy timeout: the server hung. Serializing whole requests, outside
the app, cannot nest that way.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = [
    "RequestTimingLog",
    "RetryAfter503",
    "SerializedWrites",
    "is_write",
    "main",
    "serialize_writes",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_RETRY_AFTER = "0.1"
MAX_RETRY_AFTER = 2.0
WINDOW = 1.0  # seconds of 503 history that scale the delay


class RetryAfter503:
    """ASGI wrapper: add a `Retry-After` to 503 responses that lack one.

    The delay is `base * (1 + k)`, k = other 503s answered in the last `WINDOW` seconds, at most
    `MAX_RETRY_AFTER`: a lone lock conflict is retried almost at once, a storm backs off.
    """

    def __init__(
        self, app: ASGIApp, base: float = 0.1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.app = app
        self.base = base
        self.clock = clock
        self._recent: deque[float] = deque()

    def retry_after(self) -> float:
        """Seconds to advertise for a 503 answered now (and record it)."""
        now = self.clock()
        while self._recent and now - self._recent[0] > WINDOW:
            self._recent.popleft()
        delay = min(MAX_RETRY_AFTER, self.base * (1 + len(self._recent)))
        self._recent.append(now)
        return delay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass everything through; patch the start of 503 HTTP responses."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def patched_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message.get("status") == 503:
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"retry-after" for name, _ in headers):
                    headers.append((b"retry-after", f"{self.retry_after():.3f}".encode()))
                    message["headers"] = headers
            await send(message)

        await self.app(scope, receive, patched_send)


_READ_VERBS = frozenset({"filter", "count", "paginate", "history"})


def is_write(method: str, path: str) -> bool:
    """True for an API request that may write to the database (POST/PATCH/PUT/DELETE that is
    not one of Prefect's POST-bodied reads such as `/flow_runs/filter`, nor a lease renewal,
    which touches only the lease storage: files or Redis, never the database)."""
    if method not in ("POST", "PATCH", "PUT", "DELETE"):
        return False
    parts = path.rstrip("/").split("/")
    if parts[-1] == "renew" and "leases" in parts[-3:-1]:
        return False
    return parts[-1] not in _READ_VERBS


class SerializedWrites:
    """ASGI wrapper: at most one database-writing HTTP request at a time (SQLite only).

    SQLite lets one writer commit at a time; a request whose transaction read before another
    committed cannot then write (`SQLITE_BUSY`, served as 503, retried by the client). Running the
    writing requests one after the other removes those conflicts between requests; reads and
    websockets are not held back.

    The lock covers only the server's own work: the whole request body is read before it is taken
    (a client slow to send, or one whose event loop is blocked, must not hold every writer), and
    it is released when the response starts (the handler has committed by then; a client slow to
    read its answer does not hold it either).
    """

    def __init__(self, app: ASGIApp) -> None:
        import asyncio

        self.app = app
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hold the write lock around the handling of writing HTTP requests."""
        if scope["type"] != "http" or not is_write(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        received: deque[Message] = deque()
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> Message:
            return received.popleft() if received else await receive()

        held = True
        await self._lock.acquire()

        async def send_and_release(message: Message) -> None:
            nonlocal held
            if held and message["type"] == "http.response.start":
                held = False
                self._lock.release()
            await send(message)

        try:
            await self.app(scope, replay, send_and_release)
        finally:
            if held:
                self._lock.release()


class RequestTimingLog:
    """ASGI wrapper: append one line per HTTP request to a file (a diagnostic, off by default).

    Line format: ``<start epoch s> <duration s> <method> <path> <status>``. Enabled by
    ``FLEET_SERVER_TIMING_LOG=/path/file``; used to see which API calls sit on a dispatch path.
    """

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self._file = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time `scope` if it is an HTTP request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.time()
        status: list[int] = []

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            code = status[0] if status else 0
            self._file.write(
                f"{started:.3f} {time.time() - started:.3f} {scope['method']} {scope['path']} "
                f"{code}\n"
            )


def serialize_writes(switch: str | None, server_settings: Any) -> bool:
    """Whether to serve with `SerializedWrites`: `switch` "1"/"0" forces it, else SQLite only."""
    if switch in ("0", "1"):
        return switch == "1"
    url = server_settings.database.connection_url
    text = url.get_secret_value() if hasattr(url, "get_secret_value") else str(url or "")
    return not text or text.startswith("sqlite")


def main() -> None:
    """Serve Prefect's app on the host/port of the Prefect settings (as `prefect server start`)."""
    import uvicorn
    from prefect.settings import get_current_settings

    from fleet.core.prefect_adapter import allow_scheduled_runs_on_sqlalchemy_21, create_final_app

    allow_scheduled_runs_on_sqlalchemy_21()
    settings = get_current_settings().server
    app: Any = create_final_app()
    retry_after = os.environ.get("FLEET_SERVER_RETRY_AFTER", DEFAULT_RETRY_AFTER)
    if serialize_writes(os.environ.get("FLEET_SERVER_SERIALIZE_WRITES"), settings):
        app = SerializedWrites(app)
    if retry_after:
        app = RetryAfter503(app, float(retry_after))
    timing = os.environ.get("FLEET_SERVER_TIMING_LOG")
    if timing:
        app = RequestTimingLog(app, timing)
    uvicorn.run(
        app=app,
        host=settings.api.host,
        port=settings.api.port,
        timeout_keep_alive=settings.api.keepalive_timeout,
        log_level=settings.logging_level.lower(),
    )


if __name__ == "__main__":
    main()
