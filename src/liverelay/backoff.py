"""Capped exponential backoff with optional jitter: the one copy for relay/ and sdk/.

    delay = min(cap, base * 2**attempt), then, with jitter j in [0, 1], a random point in
    [delay * (1 - j), delay]

`attempt` is 0-based (the first retry waits about `base`). The random part spreads
clients that failed together; the fixed part keeps the wait growing. jitter=0 gives the
plain deterministic sequence (used where the schedule is part of the documented
behaviour, e.g. the relay failover rounds).
"""

from __future__ import annotations

import random
from collections.abc import Callable

# 2**60 * any sane base is already past any cap: bounds the float exponent.
_MAX_EXPONENT = 60


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: float = 0.0,
    rand: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds to wait before retry number `attempt` (0-based); never negative, never above cap."""
    if attempt < 0:
        return 0.0
    base = max(0.0, base)
    ceiling = min(max(0.0, cap), base * (2.0 ** min(attempt, _MAX_EXPONENT)))
    jitter = min(1.0, max(0.0, jitter))
    if jitter == 0.0 or ceiling == 0.0:
        return ceiling
    return rand(ceiling * (1.0 - jitter), ceiling)
