"""Periodic work of many agents kept apart: each wait is drawn from [1 - JITTER, 1] x its period.

Agents whose periodic requests (status heartbeat, fallback poll, worker heartbeat) were pushed
into step by a slow server (they all resume when it answers, then wait the same period) stay in
step: with 50 agents on one replica, `make bench-ha` showed bursts of 50 status writes within 3 s
every 15 s and a burst of 50 queue polls between them, and a dispatch that fell into a burst took
twice as long. Drawing every wait afresh spreads them over the period within a few periods.
Prefect's own workers jitter their poll loop for the same reason (`critical_service_loop`,
`jitter_range=0.3`). A wait is never longer than its period, so a heartbeat is never later than
configured (the offline alert and `fleet status` count on that).
"""

from __future__ import annotations

import random

__all__ = ["JITTER", "jittered"]

#: the largest fraction of a period a wait is shortened by
JITTER = 0.25

_rng = random.Random()


def jittered(period: float, rng: random.Random | None = None) -> float:
    """A wait in seconds drawn uniformly from [(1 - JITTER) x period, period]."""
    return period * (1.0 - JITTER * (rng or _rng).random())
