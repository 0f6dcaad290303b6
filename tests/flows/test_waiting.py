"""`flows.waiting`: which errors mean "the server is away", and the bounded retry around them."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from websockets.exceptions import ConnectionClosedError

from fleet.core.errors import DispatchError, LeaseError
from flows import waiting


def _status(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://127.0.0.1/api/flow_runs/x")
    return httpx.HTTPStatusError(
        "x", request=request, response=httpx.Response(code, request=request)
    )


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 4200)"),
        ConnectionResetError(104, "reset"),
        TimeoutError("connect"),
        ConnectionClosedError(None, None),
        httpx.ConnectError("refused"),
        _status(503),
        _status(429),
    ],
)
def test_the_server_being_away_is_transient(exc: BaseException) -> None:
    assert waiting.is_transient_wait_error(exc)


@pytest.mark.parametrize(
    "exc",
    [_status(404), _status(422), ValueError("bad"), LeaseError("gone"), DispatchError("ended")],
)
def test_answers_and_our_own_errors_are_not(exc: BaseException) -> None:
    assert not waiting.is_transient_wait_error(exc)


def test_retry_transient_calls_again_until_the_server_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(waiting, "FIRST_RETRY", 0.01)
    calls: list[int] = []

    async def read() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError(111, "refused")
        return "result"

    assert asyncio.run(waiting.retry_transient(read, 5.0)) == "result"
    assert len(calls) == 3


def test_retry_transient_gives_up_after_its_window_and_at_once_on_other_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(waiting, "FIRST_RETRY", 0.05)
    calls: list[int] = []

    async def away() -> None:
        calls.append(1)
        raise ConnectionRefusedError(111, "refused")

    with pytest.raises(ConnectionRefusedError):
        asyncio.run(waiting.retry_transient(away, 0.3))
    assert 2 <= len(calls) <= 5

    async def wrong() -> None:
        calls.append(1)
        raise ValueError("not the server")

    calls.clear()
    with pytest.raises(ValueError):
        asyncio.run(waiting.retry_transient(wrong, 5.0))
    assert len(calls) == 1


@pytest.mark.orchestration
def test_a_final_state_whose_event_never_arrives_is_found_by_the_next_subscription(
    prefect_server: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker that drops the run's final-state event (seen on several servers under load):
    the wait subscribes again every `EVENT_SLICE` seconds, and each subscription reads the run's
    state first, so the wait returns the final run instead of failing at its timeout."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.exceptions import FlowRunWaitTimeout
    from prefect.states import Completed

    import flows.prefect_adapter as adapter

    @flow(name="waiting-probe")
    def probe() -> None:
        """Never run: only its flow record is needed."""

    async def deaf_subscription(flow_run_id: object, timeout: int, client: object) -> object:
        """`wait_for_flow_run` with every event lost: it reads the run first, then hears nothing."""
        async with get_client() as own:
            run = await own.read_flow_run(flow_run_id)  # type: ignore[arg-type]
        if run.state is not None and run.state.is_final():
            return run
        await asyncio.sleep(timeout)
        raise FlowRunWaitTimeout(f"no final event for {flow_run_id}")

    monkeypatch.setattr(adapter, "wait_for_final_event", deaf_subscription)
    monkeypatch.setattr(waiting, "EVENT_SLICE", 1.0, raising=False)

    async def scenario() -> object:
        async with get_client() as client:
            run = await client.create_flow_run(probe)
            waiter = asyncio.create_task(waiting.wait_final(run.id, 20.0))
            await asyncio.sleep(1.5)
            await client.set_flow_run_state(run.id, Completed(), force=True)
            return await waiter

    run = asyncio.run(scenario())
    assert run.state is not None and run.state.is_completed()  # type: ignore[attr-defined]
