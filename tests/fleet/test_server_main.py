"""The server wrapper adds an escalating Retry-After to 503 answers and passes the rest through."""

from __future__ import annotations

import asyncio

from fleet._server_main import MAX_RETRY_AFTER, RetryAfter503


def _app(status: int, headers: list[tuple[bytes, bytes]] | None = None):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": headers or []})
        await send({"type": "http.response.body", "body": b"x"})

    return app


def _call(wrapper: RetryAfter503, scope_type: str = "http") -> list[dict]:
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request"}

    asyncio.run(wrapper({"type": scope_type}, receive, send))
    return sent


def _retry_after(messages: list[dict]) -> float | None:
    for name, value in messages[0].get("headers", []):
        if name == b"retry-after":
            return float(value)
    return None


def test_503_gets_a_short_retry_after_that_grows_in_a_storm_up_to_the_cap():
    now = [100.0]
    wrapper = RetryAfter503(_app(503), base=0.1, clock=lambda: now[0])
    delays = [_retry_after(_call(wrapper)) for _ in range(30)]
    assert delays[:3] == [0.1, 0.2, 0.3]
    assert delays[-1] == MAX_RETRY_AFTER
    now[0] += 10.0  # the storm is over: back to the base delay
    assert _retry_after(_call(wrapper)) == 0.1


def test_other_answers_and_existing_retry_after_are_untouched():
    assert _retry_after(_call(RetryAfter503(_app(200)))) is None
    kept = _call(RetryAfter503(_app(503, [(b"retry-after", b"7")])))
    assert _retry_after(kept) == 7.0
    assert len(kept[0]["headers"]) == 1


def test_timing_log_writes_one_line_per_http_request(tmp_path) -> None:
    from fleet._server_main import RequestTimingLog

    log = tmp_path / "timing.log"
    wrapper = RequestTimingLog(_app(201), str(log))
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request"}

    asyncio.run(wrapper({"type": "http", "method": "POST", "path": "/api/x"}, receive, send))
    asyncio.run(wrapper({"type": "lifespan"}, receive, send))
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    started, duration, method, path, status = lines[0].split()
    assert (method, path, status) == ("POST", "/api/x", "201")
    assert float(started) > 0 and float(duration) >= 0
    assert sent[0]["status"] == 201
