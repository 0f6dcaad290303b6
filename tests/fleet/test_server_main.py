"""The server wrapper adds an escalating Retry-After to 503 answers and passes the rest through."""

from __future__ import annotations

import asyncio

from fleet.core._server_main import MAX_RETRY_AFTER, RetryAfter503


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
    from fleet.core._server_main import RequestTimingLog

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


def test_write_requests_are_told_from_post_bodied_reads() -> None:
    from fleet.core._server_main import is_write

    assert is_write("POST", "/api/flow_runs/")
    assert is_write("POST", "/api/flow_runs/5c1e/set_state")
    assert is_write("PATCH", "/api/variables/name/fleet_status__a")
    assert is_write("DELETE", "/api/variables/name/fleet_lock__a")
    assert is_write("POST", "/api/work_pools/p/get_scheduled_flow_runs")  # marks the queue polled
    assert not is_write("POST", "/api/flow_runs/filter")
    assert not is_write("POST", "/api/flow_runs/count/")
    assert not is_write("POST", "/api/ui/flow_runs/history")
    assert not is_write("GET", "/api/flow_runs/5c1e")
    # a lease renewal touches the lease storage (files or Redis), not the database; taking and
    # releasing a slot do write it
    assert not is_write("POST", "/api/v2/concurrency_limits/leases/5c1e/renew")
    assert is_write("POST", "/api/v2/concurrency_limits/increment-with-lease")
    assert is_write("POST", "/api/v2/concurrency_limits/decrement-with-lease")


def test_serialized_writes_run_one_at_a_time_and_reads_alongside() -> None:
    from fleet.core._server_main import SerializedWrites

    inside: list[str] = []
    peak = {"writes": 0, "reads_during_write": 0}

    async def app(scope, receive, send):
        kind = "write" if scope["method"] == "PATCH" else "read"
        inside.append(kind)
        peak["writes"] = max(peak["writes"], inside.count("write"))
        if kind == "read" and "write" in inside:
            peak["reads_during_write"] += 1
        await asyncio.sleep(0.01)
        inside.remove(kind)
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def main() -> None:
        wrapper = SerializedWrites(app)

        async def call(method: str, path: str) -> None:
            scope = {"type": "http", "method": method, "path": path}

            async def receive():
                return {"type": "http.request"}

            async def send(message):
                return None

            await wrapper(scope, receive, send)

        writes = [call("PATCH", f"/api/variables/name/v{i}") for i in range(8)]
        reads = [call("POST", "/api/flow_runs/filter") for _ in range(8)]
        await asyncio.gather(*writes, *reads)

    asyncio.run(main())
    assert peak["writes"] == 1  # never two writing requests in the app at once
    assert peak["reads_during_write"] > 0  # reads were not held back


def test_writes_are_serialized_on_sqlite_only_unless_forced() -> None:
    from types import SimpleNamespace

    from pydantic import SecretStr

    from fleet.core._server_main import serialize_writes

    def settings(url: str | None) -> SimpleNamespace:
        secret = SecretStr(url) if url is not None else None
        return SimpleNamespace(database=SimpleNamespace(connection_url=secret))

    assert serialize_writes(None, settings("sqlite+aiosqlite:////tmp/prefect.db"))
    assert serialize_writes(None, settings(None))  # Prefect's default database is SQLite
    assert not serialize_writes(None, settings("postgresql+asyncpg://u:p@127.0.0.1/prefect"))
    assert not serialize_writes("0", settings("sqlite+aiosqlite:////tmp/prefect.db"))
    assert serialize_writes("1", settings("postgresql+asyncpg://u:p@127.0.0.1/prefect"))


def test_a_client_slow_to_send_or_to_read_does_not_hold_other_writes() -> None:
    from fleet.core._server_main import SerializedWrites

    done: list[str] = []

    async def main() -> None:
        body_arrives = asyncio.Event()
        reader_is_back = asyncio.Event()

        async def app(scope, receive, send):
            await receive()
            await send({"type": "http.response.start", "status": 204, "headers": []})
            if scope["path"].endswith("slow-reader"):
                await reader_is_back.wait()  # sending the body to a client that does not read
            await send({"type": "http.response.body", "body": b""})
            done.append(scope["path"].rsplit("/", 1)[-1])

        wrapper = SerializedWrites(app)

        def call(name: str, receive):
            scope = {"type": "http", "method": "POST", "path": f"/api/variables/{name}"}

            async def send(message):
                return None

            return asyncio.create_task(wrapper(scope, receive, send))

        async def slow_body():
            await body_arrives.wait()
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def full_body():
            return {"type": "http.request", "body": b"{}", "more_body": False}

        slow_sender = call("slow-sender", slow_body)
        slow_reader = call("slow-reader", full_body)
        await asyncio.sleep(0.05)
        fast = call("fast", full_body)
        await asyncio.wait_for(fast, 2.0)  # neither slow client held the lock
        assert done == ["fast"]
        body_arrives.set()
        reader_is_back.set()
        await asyncio.wait_for(asyncio.gather(slow_sender, slow_reader), 2.0)

    asyncio.run(main())
    assert sorted(done) == ["fast", "slow-reader", "slow-sender"]
