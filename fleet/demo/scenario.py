"""The demo's lab-scheduler scenario: batch, reservation, e-stop, plates; its rows and final table.

Everything goes through the scheduler API (`fleet.client.AsyncFleetClient`): real parent flows run
in this process, each a tracked flow run on the server. `run_scenario(inv, console)` returns one
`Row` per operation; the intentional e-stop failures carry `expected_failure=True`. The steps
assume the resorts of `inventory/demo.yaml` (names, labels, a six-hotel resort-b). The plate step
is `fleet.demo.plates`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

from fleet.core.errors import FleetError

__all__ = [
    "BATCH_PLAN",
    "Console",
    "Row",
    "call_row",
    "format_table",
    "run_scenario",
    "say_row",
    "scenario_batch",
    "scenario_estop",
    "scenario_reservation",
]

WAIT_MOVING_TIMEOUT = 20.0
ESTOP_REASON = "demo: a person reached into the carousel"

#: the batch: a morning plate load across the fleet (some by name, some by selector)
BATCH_PLAN: tuple[dict[str, Any], ...] = (
    {"resort": "resort-a", "action": "activate_hotel", "hotel": "B"},
    {"resort": "resort-b", "action": "activate_hotel", "hotel": "D"},
    {"resort": "resort-c", "action": "activate_hotel", "hotel": "C"},
    {"selector": {"labels": ["cold"]}, "action": "activate_hotel", "hotel": "D"},
    {"selector": {"labels": ["reader-side"]}, "action": "activate_hotel", "hotel": "A"},
    {"selector": {"hotel": "F"}, "action": "activate_hotel", "hotel": "F"},
    {"resort": "resort-a", "action": "activate_hotel", "hotel": "A"},
    {"resort": "resort-c", "action": "activate_hotel", "hotel": "B"},
    {"selector": {"labels": ["reader-side", "spare"]}, "action": "activate_hotel", "hotel": "D"},
    {"resort": "resort-b", "action": "activate_hotel", "hotel": "E"},
    {"selector": {"labels": ["reader-side"]}, "action": "activate_hotel", "hotel": "B"},
    {"resort": "resort-a", "action": "activate_hotel", "hotel": "C"},
)
#: the reservation: a resort with hotel F on the reader side, held for activate + go home
RESERVE_SELECTOR: dict[str, Any] = {"labels": ["reader-side"], "hotel": "F"}


# --------------------------------------------------------------------------- output


class Console:
    """Per-step lines a person can follow: `[  12.3s] text` on stdout (this is CLI output)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        self.started = time.monotonic()

    def line(self, text: str = "") -> None:
        """One timestamped line."""
        self.stream.write(f"[{time.monotonic() - self.started:6.1f}s] {text}\n")
        self.stream.flush()

    def raw(self, text: str) -> None:
        """Text as is (tables)."""
        self.stream.write(text.rstrip("\n") + "\n")
        self.stream.flush()


@dataclass
class Row:
    """One operation of the scenario, as shown in the final table.

    Attributes:
        step: "batch", "reserve", "e-stop" or "plates".
        operation: what was asked (`activate_hotel B on resort-a`).
        resort: the resort it ran on (selectors resolved).
        state: Completed, Failed, Crashed, ...
        duration: seconds, as the caller saw it.
        error: the one-line error of a failed operation.
        expected_failure: True for the intentional e-stop failures.
        flow_run_id: the device run (when one was created).
    """

    step: str
    operation: str
    resort: str | None
    state: str
    duration: float | None
    error: str | None = None
    expected_failure: bool = False
    flow_run_id: str | None = None

    @property
    def ok(self) -> bool:
        """Did it end as the scenario intends?"""
        if self.expected_failure:
            return self.state != "Completed"
        return self.state == "Completed"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" if value < 1.0 else f"{value:.1f} s"


def _short_error(error: str | None) -> str:
    """First line of an error, without Prefect's wrapper text and the run id."""
    if not error:
        return ""
    text = error.splitlines()[0].replace("Flow run encountered an exception: ", "")
    if text.endswith(")") and " (run " in text:
        text = text[: text.rindex(" (run ")]
    return text


def format_table(rows: Sequence[Row]) -> str:
    """The final table: #, step, operation, resort, state, duration, error."""
    header = ("#", "step", "operation", "resort", "state", "duration", "error")
    body = []
    for i, r in enumerate(rows, 1):
        state = r.state + (" (expected)" if r.expected_failure and r.ok else "")
        state += "" if r.ok else " !"
        error = _short_error(r.error)
        body.append(
            (
                str(i),
                r.step,
                r.operation,
                r.resort or "-",
                state,
                _seconds(r.duration),
                error[:100] + ("..." if len(error) > 100 else ""),
            )
        )
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for b in body:
        lines.append("  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip())
    return "\n".join(lines)


# --------------------------------------------------------------------------- steps


async def call_row(
    step: str,
    operation: str,
    resort: str | None,
    call: Awaitable[Any],
    *,
    expect_failure: bool = False,
) -> Row:
    """Await one parent-flow call and turn its outcome into a Row (never raises FleetError)."""
    from fleet.core.errors import DispatchError

    began = time.monotonic()
    row = Row(step, operation, resort, "Completed", None, expected_failure=expect_failure)
    try:
        result = await call
    except DispatchError as exc:
        row.state, row.error, row.flow_run_id = exc.state or "Failed", str(exc), exc.flow_run_id
    except FleetError as exc:
        row.state, row.error = "Failed", str(exc)
    else:
        if isinstance(result, dict):
            row.resort = result.get("resort", resort)
            row.flow_run_id = result.get("flow_run_id")
    row.duration = round(time.monotonic() - began, 2)
    return row


def say_row(console: Console, row: Row, prefix: str = "") -> None:
    took = f" in {_seconds(row.duration)}" if row.duration is not None else ""
    error = f": {_short_error(row.error)}" if row.error else ""
    console.line(f"{prefix}{row.operation} -> {row.resort or '?'}: {row.state}{took}{error}")


async def scenario_batch(client: Any, console: Console) -> list[Row]:
    """Step 1: a batch of activations across the fleet, with a line per start and finish."""
    total = len(BATCH_PLAN)
    console.line(f"== 1. batch: {total} hotel activations across the fleet (fleet-batch) ==")

    def progress(result: Any) -> None:
        tag = f"  [{result.index + 1:2d}/{total}] "
        if result.state == "Running":
            console.line(f"{tag}{result.operation} -> {result.resort}: started")
        elif result.state != "Pending":
            row = Row("batch", result.operation, result.resort, result.state, result.duration)
            row.error = result.error
            say_row(console, row, tag)

    began = time.monotonic()
    try:
        report = await client.batch(list(BATCH_PLAN), max_concurrency=3, on_progress=progress)
    except FleetError as exc:
        row = Row("batch", "fleet-batch", None, "Failed", time.monotonic() - began, str(exc))
        say_row(console, row)
        return [row]
    done = sum(r.state == "Completed" for r in report.results)
    console.line(f"batch: {done} of {total} completed, makespan {report.makespan:.1f} s")
    return [
        Row("batch", r.operation, r.resort, r.state, r.duration, r.error, False, r.flow_run_id)
        for r in report.results
    ]


async def scenario_reservation(inv: Any, console: Console) -> list[Row]:
    """Step 2: hold one resort across two steps while a second scheduler waits for it."""
    from fleet.client import AsyncFleetClient
    from resort_common import names

    console.line("== 2. reservation: hold a resort for activate -> arm picks -> go home ==")
    holder = AsyncFleetClient(inv, lock_timeout=120.0)
    other = AsyncFleetClient(inv, lock_timeout=120.0)  # a second lab scheduler
    rows: list[Row] = []
    began = time.monotonic()
    try:
        async with holder.reserve(selector=RESERVE_SELECTOR, timeout=120.0) as held:
            name = held.resort
            console.line(
                f"reserved {name} (selector labels=[reader-side] hotel=F; lock "
                f"{names.lock_name(name)} held by this scheduler)"
            )
            asked = time.monotonic()
            second = asyncio.create_task(
                call_row(
                    "reserve",
                    f"activate_hotel A on {name} (2nd scheduler)",
                    name,
                    other.activate_hotel(name, "A"),
                )
            )
            console.line(f"a second scheduler asks for {name} hotel A: it has to wait")
            row = await call_row(
                "reserve", f"activate_hotel F on {name} (reserved)", name, held.activate_hotel("F")
            )
            say_row(console, row, "  ")
            rows.append(row)
            console.line("  the arm picks the plate from hotel F (1 s) ...")
            await asyncio.sleep(1.0)
            row = await call_row("reserve", f"go_home on {name} (reserved)", name, held.go_home())
            say_row(console, row, "  ")
            rows.append(row)
            still_waiting = not second.done()
            console.line(
                "  second scheduler "
                + (
                    f"still waiting after {time.monotonic() - asked:.1f} s"
                    if still_waiting
                    else "is NOT waiting"
                )
                + f"; releasing {name}"
            )
        released = time.monotonic()
    except FleetError as exc:
        row = Row("reserve", "reserve", None, "Failed", time.monotonic() - began, str(exc))
        say_row(console, row)
        return [*rows, row]
    row = await second
    if not still_waiting and row.state == "Completed":
        row.state, row.error = "Failed", "ran while the resort was reserved (lock not honoured)"
    say_row(console, row, f"  released; the 2nd scheduler waited {released - asked:.1f} s: ")
    rows.append(row)
    return rows


async def _wait_status(inv: Any, name: str, predicate: Any, timeout: float) -> Any:
    """Poll the resort's status until `predicate(status)`; the last status (or None)."""
    from fleet.core.status import aread_status

    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = {s.name: s for s in await aread_status(inv)}.get(name)
        if status is not None and predicate(status):
            return status
        await asyncio.sleep(0.1)
    return status


async def scenario_estop(client: Any, inv: Any, console: Console) -> list[Row]:
    """Step 3: e-stop during a move; the next move is refused; clear; a good move."""
    from fleet.core.errors import EstopError
    from fleet.core.estop import aclear_estop, aestop

    resort = min(inv.resorts, key=lambda r: (not r.active, r.speed))  # slowest: longest move
    name = resort.name
    console.line(f"== 3. emergency stop on {name} during a move, then estop-clear ==")
    rows: list[Row] = []
    status = await _wait_status(inv, name, lambda s: s.online, 10.0)
    position = status.position if status is not None and status.position is not None else 0.0
    target = round((position + 180.0) % 360.0, 1)
    move = asyncio.create_task(
        call_row(
            "e-stop",
            f"move_to_angle {target:g} on {name}",
            name,
            client.move_to_angle(name, target),
            expect_failure=True,
        )
    )
    console.line(f"  {name} turns from {position:.1f} to {target:g} deg (180 deg) ...")
    moving = await _wait_status(inv, name, lambda s: s.moving, WAIT_MOVING_TIMEOUT)
    if moving is None or not moving.moving:
        console.line(f"  (did not see {name} moving within {WAIT_MOVING_TIMEOUT:g} s)")
    else:
        await asyncio.sleep(0.4)
    try:
        acks = await aestop(inv, [name], ESTOP_REASON)
    except (EstopError, FleetError) as exc:
        rows.append(Row("e-stop", f"estop {name}", name, "Failed", None, str(exc)))
    else:
        ack = acks[0]
        console.line(
            f"  EMERGENCY STOP {name} ({ESTOP_REASON}): torque off, acknowledged in "
            f"{ack.latency * 1000:.0f} ms"
        )
        rows.append(Row("e-stop", f"estop {name}", name, "Completed", round(ack.latency, 3)))
    row = await move
    if row.state == "Completed":
        console.line(f"  (the move finished before the stop reached {name})")
        row.expected_failure = False
    say_row(console, row, "  interrupted move: ")
    rows.insert(0, row)

    refused = await call_row(
        "e-stop",
        f"activate_hotel B on {name} (while e-stopped)",
        name,
        client.activate_hotel(name, "B"),
        expect_failure=True,
    )
    say_row(console, refused, "  next move: ")
    rows.append(refused)

    try:
        acks = await aclear_estop(inv, [name])
    except (EstopError, FleetError) as exc:
        rows.append(Row("e-stop", f"estop-clear {name}", name, "Failed", None, str(exc)))
        return rows
    console.line(f"  estop-clear {name}: acknowledged in {acks[0].latency * 1000:.0f} ms")
    rows.append(Row("e-stop", f"estop-clear {name}", name, "Completed", round(acks[0].latency, 3)))
    await _wait_status(inv, name, lambda s: not s.estopped, 10.0)
    row = await call_row(
        "e-stop",
        f"activate_hotel B on {name} (after clear)",
        name,
        client.activate_hotel(name, "B"),
    )
    say_row(console, row, "  ")
    rows.append(row)
    return rows


async def run_scenario(inv: Any, console: Console, ui_url: str | None = None) -> list[Row]:
    """The whole lab-scheduler scenario (batch, reservation, e-stop, plates); rows in order."""
    from fleet.client import AsyncFleetClient
    from fleet.demo.plates import scenario_plates

    client = AsyncFleetClient(inv, lock_timeout=120.0)
    rows = await scenario_batch(client, console)
    rows += await scenario_reservation(inv, console)
    rows += await scenario_estop(client, inv, console)
    rows += await scenario_plates(client, inv, console, ui_url)
    return rows
