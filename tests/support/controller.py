"""`fleet controller` as a subprocess: it serves the provisioned parent deployments."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["running_controller"]

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def running_controller(
    inventory_path: Path, log: Path, poll_seconds: float | None = 1.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `fleet controller --inventory ...` (queue polled every `poll_seconds`; None: Prefect's
    default, as deployed) for the block; its output goes to `log`. Stopped with SIGTERM (SIGKILL
    after 30 s) on exit."""
    env = dict(os.environ)
    if poll_seconds is not None:
        env["PREFECT_WORKER_QUERY_SECONDS"] = f"{poll_seconds:g}"
    with log.open("wb") as out:
        controller = subprocess.Popen(
            [str(Path(sys.executable).with_name("fleet")), "controller", "--inventory",
             str(inventory_path)],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO), start_new_session=True,
        )  # fmt: skip
    try:
        yield controller
    finally:
        if controller.poll() is None:  # a test may have stopped or killed it already
            os.killpg(controller.pid, signal.SIGTERM)
            try:
                controller.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(controller.pid, signal.SIGKILL)
                controller.wait(10)
