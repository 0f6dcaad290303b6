"""The device thread: one long-lived thread that executes flow runs with Prefect's engine, in turn.

It enters one sync API client for its lifetime (reused by every run), turns flow-run heartbeats
off for its runs, and is an `EngineThread`, so the engine skips its per-run suspension observer
there (see `device_agent.prefect_adapter`).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import queue
from collections.abc import Callable
from typing import Any

from device_agent.prefect_adapter import (
    EngineThread,
    engine_thread_context,
    skip_suspension_observer_on_engine_threads,
)

__all__ = ["DeviceThread"]

logger = logging.getLogger(__name__)


def _stop() -> None:  # sentinel: the thread exits when it takes this item
    return None


class DeviceThread:
    """One long-lived thread that executes flow runs, one at a time.

    The thread starts on the first `submit`, in a copy of the caller's context (its Prefect
    settings, e.g. the API URL).
    """

    def __init__(self, name: str = "device") -> None:
        self._queue: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]]] = (
            queue.SimpleQueue()
        )
        self._name = name
        self._thread: EngineThread | None = None
        self.busy = False

    def start(self) -> None:
        """Start the thread now (it enters its API client), else on the first `submit`."""
        if self._thread is None:
            context = contextvars.copy_context()
            self._thread = EngineThread(
                target=context.run, args=(self._main,), name=self._name, daemon=True
            )
            self._thread.start()

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Queue `fn` for the device thread; its result or exception lands in the future."""
        self.start()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((future, fn))
        return future

    def stop(self) -> None:
        """Let the thread exit after the current item (it is a daemon thread anyway)."""
        if self._thread is not None:
            self._queue.put((concurrent.futures.Future(), _stop))

    def _main(self) -> None:
        if not skip_suspension_observer_on_engine_threads():
            logger.warning("this Prefect has no suspension observer hook; runs start slower")
        with engine_thread_context() as heartbeats_off:
            if not heartbeats_off:
                logger.warning("flow-run heartbeats could not be turned off on the device thread")
            while True:
                future, fn = self._queue.get()
                if fn is _stop:
                    return
                if not future.set_running_or_notify_cancel():
                    continue
                self.busy = True
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)
                finally:
                    self.busy = False
