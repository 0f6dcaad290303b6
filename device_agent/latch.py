"""Which e-stop latch commands an agent has already applied, so a late copy cannot undo a newer one.

A latch command (`fleet estop`, `fleet estop-clear`, the `emergency-stop` flow) carries a
`command_id` and reaches an agent by up to three paths: live as an event, again as a replayed
event when the agent's subscription reconnects, and as the latch variable the agent reads at
start-up, on every reconnect and on every heartbeat. Copies can arrive out of order. A latch read
answered while a resort was stopped can arrive after the clear that followed, and would stop the
resort again with nobody asking. CI saw this: a resort was cleared and acknowledged, then reported
e-stopped again.

`LatchLedger` remembers the ids applied on this agent. A copy of an applied command is skipped. A
command without an id (a latch variable written by hand) is always applied.
"""

from __future__ import annotations

from collections import deque

__all__ = ["LatchLedger"]


class LatchLedger:
    """The ids of the latch commands applied here (the newest `size`).

    Not locked itself: `DeviceSession.apply_latch`, its one user, holds the session's latch lock.

    Args:
        size: how many ids to remember.
    """

    def __init__(self, size: int = 256) -> None:
        self._order: deque[str] = deque()
        self._ids: set[str] = set()
        self._size = size

    def first_time(self, command_id: object) -> bool:
        """Record `command_id` as applied; False if it already was (then skip the command).

        A missing or empty id counts as new every time.
        """
        if not isinstance(command_id, str) or not command_id:
            return True
        if command_id in self._ids:
            return False
        self._ids.add(command_id)
        self._order.append(command_id)
        while len(self._order) > self._size:
            self._ids.discard(self._order.popleft())
        return True
