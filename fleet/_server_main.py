"""Run Prefect's own server (API, UI, services) with 503 answers that say when to retry.

`python -m fleet._server_main` is what `fleet server up` and the test fixtures start instead of
`prefect server start`. It serves exactly `prefect.server.api.server.create_app(final=True)`, the
app `prefect server start` serves, with one ASGI wrapper: a 503 without a `Retry-After` header
gets one: ``0.1`` s when 503s are rare, growing by 0.1 s with each other 503 of the last second
(up to 2 s), so a lock storm still backs off.

Why: on SQLite a write that loses a lock race answers 503 ("database is locked"), and Prefect's
client then sleeps ``2**attempt`` seconds (2 s first) unless the server says otherwise. Measured on
this project's dispatch path, those retries turned a third of all run submissions into ~2.3 s
stalls. Prefect's client honours `Retry-After` (`prefect.client.base._parse_retry_after`), so the
same retry happens 0.1 s later instead. PostgreSQL servers rarely answer 503 at all.
Set ``FLEET_SERVER_RETRY_AFTER=`` (empty) to serve the unmodified app, or a number of seconds to
change the base delay.

``FLEET_SERVER_TIMING_LOG=FILE`` also logs every request's start, duration and status
(`RequestTimingLog`), to see what sits on a dispatch path.

Not done here, on purpose: beginning every SQLite write transaction ``IMMEDIATE`` removes the
503s (8 threads of read-then-write calls: 0 of 360 instead of 22 of 67), but Prefect opens
nested sessions inside write transactions (e.g. `PATCH /work_queues/{id}` emitting its status
event), and those then wait on the outer transaction's lock until the busy timeout: the server
hung. Fewer writes on the dispatch path (see `device_agent.worker`) was the safer cure.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["RequestTimingLog", "RetryAfter503", "main"]

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


def main() -> None:
    """Serve Prefect's app on the host/port of the Prefect settings (as `prefect server start`)."""
    import uvicorn
    from prefect.server.api.server import create_app
    from prefect.settings import get_current_settings

    settings = get_current_settings().server
    app: Any = create_app(final=True)
    retry_after = os.environ.get("FLEET_SERVER_RETRY_AFTER", DEFAULT_RETRY_AFTER)
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
