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
