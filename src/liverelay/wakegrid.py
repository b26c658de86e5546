"""Periodic wake-ups on one grid of loop time, so a node's once-a-second tasks wake together.

A timer that fires on its own is a wake-up of the event loop, and a Python loop's wake-up
costs far more than the little a poller then does (cold caches). The node's periodic tasks
(the stream sampler, the HLS janitor, each relay supervisor's checks) slept a period from
their own start, so a node relaying one stream woke three times a second at three phases.
Sleeping until the next multiple of the period in loop time puts them in one loop turn.
The native HLS puller paces its frames on the same grid at a quarter of a second
(sources/hls.py, PACE_TICK_S), whose ticks include every whole second.
"""

from __future__ import annotations

import asyncio
import math


def next_tick(now: float, period: float) -> float:
    """The first multiple of `period` after `now` (loop time); a `now` on a multiple (within
    float error) gets the next one, so a task woken on the grid never wakes again at once."""
    return (math.floor(now / period + 1e-6) + 1) * period


def tick_at_or_after(when: float, period: float) -> float:
    """The first multiple of `period` at or after `when` (loop time)."""
    return math.ceil(when / period) * period


async def sleep_to_tick(period: float) -> None:
    """Sleep until the next multiple of `period` in loop time (at most `period`)."""
    loop = asyncio.get_running_loop()
    now = loop.time()
    await asyncio.sleep(next_tick(now, period) - now)
