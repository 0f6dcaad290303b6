"""`move-sequence`: several moves of one resort in one device run, back to back.

A batch lane (`flows.pipeline`) sends a resort's consecutive moves as one run of this flow, so
the motor does not idle between two moves for a run's claim, state reports and lease check: the
agent moves, records the step, and starts the next move at once. What every single move flow
guarantees holds for each step:

* **Lock.** The run carries the lane's lease (`lease`). Before the first step the agent checks it
  (live, and the resort's recorded holder) as for any motion run. For each later step the checks
  run on a helper thread while the step before moves (`_Lookahead`): the lease is renewed, then
  the holder record re-read every `RECHECK_EVERY` s until that step ends, and the next step
  starts on the last check, at most one re-check old. A failed check stops the run before the
  motor's next write (`LeaseError`).
* **E-stop and cancel.** Each step takes the session's motion gate, which refuses it while
  e-stopped, disconnected or cancelled; an e-stop or cancel during a step aborts that step, and no
  later step starts.
* **Fairness.** With each lookahead the agent also reads the resort's waiting announcement
  (`fleet.core.locks.waiting`). When a scheduler waits, the run stops after the step under way
  and reports the steps it did not run as `yielded`, so its lane can give the lock back: a waiter
  gets the resort within one move. `yield_first` asks for that check before the first step too
  (a run queued behind another one).
* **Order.** A run queued behind another one names it (`after`). It runs only when that run was
  the last `move-sequence` run of this resort on this agent and completed all of its moves;
  otherwise it yields every move, so a lane never runs a later move before an earlier one that
  was yielded, failed or never ran.
* **Results.** The run publishes one table artifact with a row per step run (action, target,
  position, hotel, duration, start and end times, state, error), also when a step failed, and the
  run then fails with that step's error. `flows.results.aread_sequence_result` reads it back.

At most `MAX_SEQUENCE_MOVES` moves a run, each shaped like a batch operation's action:
`{"action": "activate_hotel", "hotel": "B"}`, `{"action": "go_home"}`,
`{"action": "move_to_angle", "angle": 90.0}`.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run as runtime_flow_run

from device_agent import current_device
from device_agent.session import DeviceSession
from fleet.core import locks
from fleet.core.errors import LeaseError
from fleet.core.locks.waiting import someone_waiting_sync
from fleet.core.plan import ACTIONS
from flows.device import FLOW_OPTIONS, after_move, artifact_key

__all__ = ["MAX_SEQUENCE_MOVES", "move_sequence", "parse_moves"]

logger = logging.getLogger(__name__)

#: the most moves one run of `move-sequence` takes
MAX_SEQUENCE_MOVES = 20
#: seconds a step waits for its lookahead check before the run stops (yielding the rest)
LOOKAHEAD_WAIT = 10.0
#: seconds between two re-checks of the holder record and the waiters while a step moves
RECHECK_EVERY = 0.25

#: resort -> (id of its last `move-sequence` run on this agent, whether it ran all its moves)
_last_runs: dict[str, tuple[str | None, bool]] = {}
_last_runs_lock = threading.Lock()


def _follows(resort: str, after: str | None) -> bool:
    """Whether a run queued behind run `after` may start (see "Order" above)."""
    if after is None:
        return True
    with _last_runs_lock:
        last = _last_runs.get(resort)
    return last is not None and last == (after, True)


def _record(resort: str, run_id: str | None, complete: bool) -> None:
    with _last_runs_lock:
        _last_runs[resort] = (run_id, complete)


@dataclass(frozen=True)
class Move:
    """One step of a sequence: an action and its argument."""

    action: str
    hotel: str | None = None
    angle: float | None = None

    def describe(self) -> str:
        if self.action == "activate_hotel":
            return f"activate_hotel {self.hotel}"
        if self.action == "move_to_angle":
            return f"move_to_angle {self.angle:g}"
        return self.action


def parse_moves(moves: Any) -> list[Move]:
    """The steps of `moves` (the flow's parameter), checked.

    Raises:
        ValueError: names the step and field at fault and what is allowed.
    """
    if not isinstance(moves, list) or not moves:
        raise ValueError("moves: must be a non-empty list of moves")
    if len(moves) > MAX_SEQUENCE_MOVES:
        raise ValueError(f"moves: {len(moves)} moves, at most {MAX_SEQUENCE_MOVES} allowed")
    parsed = []
    for i, raw in enumerate(moves):
        where = f"moves[{i}]"
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: must be a mapping with an 'action'")
        action = raw.get("action")
        if action not in ACTIONS:
            raise ValueError(f"{where}.action: {action!r} is not one of {', '.join(ACTIONS)}")
        allowed = {"action", "hotel"} if action == "activate_hotel" else {"action"}
        if action == "move_to_angle":
            allowed = {"action", "angle"}
        extra = sorted(set(raw) - allowed)
        if extra:
            raise ValueError(f"{where}: {', '.join(extra)} not allowed for {action}")
        hotel, angle = raw.get("hotel"), raw.get("angle")
        if action == "activate_hotel" and (not isinstance(hotel, str) or not hotel):
            raise ValueError(f"{where}.hotel: a hotel name is required for activate_hotel")
        if action == "move_to_angle" and (
            isinstance(angle, bool) or not isinstance(angle, (int, float))
        ):
            raise ValueError(f"{where}.angle: a number of degrees is required for move_to_angle")
        parsed.append(Move(action, hotel=hotel, angle=float(angle) if angle is not None else None))
    return parsed


@dataclass(frozen=True)
class _Check:
    lease_error: LeaseError | None
    waiter: bool


class _Lookahead:
    """The checks for the next step, made on a helper thread while the current step moves.

    The first check of a step renews the lease as the single-move check does; then, until the
    step ends, the holder record (which a release clears before it frees the slot) and the
    waiting announcement are read again every `RECHECK_EVERY` s. The next step starts on the
    last check made, at most one re-check old; a lease found gone stays gone.
    """

    def __init__(self, session: DeviceSession, lease: str | None) -> None:
        self.session = session
        self.lease = lease
        self._stop = threading.Event()
        self._done = threading.Event()
        self._latest: _Check | None = None

    def check(self, client: Any, *, renew: bool = True) -> _Check:
        """Check the lease and read the waiting announcement now (a sync client)."""
        try:
            locks.verify_lease_sync(client, self.session.name, self.lease, renew=renew)
        except LeaseError as exc:
            return _Check(exc, False)
        return _Check(None, someone_waiting_sync(client, self.session.name))

    def check_now(self) -> _Check:
        """`check` on a client of its own (the first step's, on the device thread)."""
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            return self.check(client)

    def start(self) -> None:
        """Start checking for the next step on a helper thread (same Prefect settings)."""
        self._stop.clear()
        self._done.clear()
        self._latest = None
        context = contextvars.copy_context()
        threading.Thread(
            target=context.run, args=(self._loop,), name="sequence-lookahead", daemon=True
        ).start()

    def _loop(self) -> None:
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True) as client:
                renew = True
                while True:
                    began = time.monotonic()
                    try:
                        result = self.check(client, renew=renew)
                    except Exception:  # a busy or absent server: try again
                        logger.debug("sequence lookahead check failed", exc_info=True)
                    else:
                        self._latest, renew = result, False
                        if result.lease_error is not None:
                            return
                    if self._stop.wait(max(0.0, RECHECK_EVERY - (time.monotonic() - began))):
                        return
        finally:
            self._done.set()

    def next_check(self) -> _Check | None:
        """The last check made for this step (None when none succeeded); ends the checking."""
        self._stop.set()
        self._done.wait(LOOKAHEAD_WAIT)
        return self._latest

    def close(self) -> None:
        self._stop.set()


def _run_move(driver: Any, move: Move) -> Any:
    if move.action == "activate_hotel":
        return driver.activate_hotel(move.hotel)
    if move.action == "move_to_angle":
        return driver.move_to_angle(move.angle)
    return driver.go_home()


def _publish(session: DeviceSession, rows: list[dict[str, Any]], total: int) -> None:
    done = sum(1 for row in rows if row["state"] == "Completed")
    create_table_artifact(
        table=rows,
        key=artifact_key(session.name, "move-sequence"),
        description=f"move-sequence on {session.name}: {done} of {total} moves completed",
    )


@flow(name="move-sequence", **FLOW_OPTIONS)
def move_sequence(
    moves: list[dict[str, Any]],
    lease: str | None = None,
    yield_first: bool = False,
    after: str | None = None,
) -> dict[str, Any]:
    """Run `moves` (see the module docstring) one after another (needs the lock's `lease`).

    Returns:
        `{"resort", "flow_run_id", "steps": [row per step run], "completed", "yielded"}`;
        `yielded` counts the trailing moves not run because a scheduler waits for the resort.
    """
    plan = parse_moves(moves)
    session = current_device()
    log = get_run_logger()
    log.info("%s: %d moves: %s", session.name, len(plan), ", ".join(m.describe() for m in plan))
    run_id = str(runtime_flow_run.id) if runtime_flow_run.id else None
    rows: list[dict[str, Any]] = []
    lookahead = _Lookahead(session, lease)
    yielded = 0
    try:
        for index, move in enumerate(plan):
            if index == 0 and not _follows(session.name, after):
                yielded = len(plan)
                log.info("%s: run %s before it did not run all its moves here", session.name, after)
                break
            if index == 0:
                first = lookahead.check_now()
                check: _Check | None = first if yield_first else _Check(first.lease_error, False)
            else:
                check = lookahead.next_check()
            if check is None or check.waiter:
                yielded = len(plan) - index
                why = "a scheduler waits for the resort" if check else "the lease check did not end"
                log.info("%s: stopping after %d moves: %s", session.name, index, why)
                break
            started = time.time()
            row: dict[str, Any] = {"index": index, "action": move.action, "state": "Running"}
            rows.append(row)
            problem = check.lease_error

            def permit(problem: LeaseError | None = problem) -> None:
                if problem is not None:
                    raise problem

            try:
                with session.motion(permit=permit) as driver:
                    if index + 1 < len(plan):
                        lookahead.start()
                    result = after_move(session, _run_move(driver, move))
            except BaseException as exc:
                row.update(state="Failed", error=f"{type(exc).__name__}: {exc}")
                row.update(started_at=started, finished_at=time.time())
                raise
            row.update(result, state="Completed", started_at=started, finished_at=time.time())
            log.info(
                "%s: move %d of %d done: %s, at %.1f deg (%.2f s)",
                session.name,
                index + 1,
                len(plan),
                move.describe(),
                row["position"],
                row["duration"],
            )
    finally:
        lookahead.close()
        complete = len(rows) == len(plan) and all(r["state"] == "Completed" for r in rows)
        _record(session.name, run_id, complete)
        _publish(session, rows, len(plan))
    return {
        "resort": session.name,
        "flow_run_id": run_id,
        "steps": rows,
        "completed": len(rows),
        "yielded": yielded,
    }
