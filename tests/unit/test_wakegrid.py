"""The shared wake-up grid (wakegrid): periodic tasks started apart wake together."""

from __future__ import annotations

import asyncio

from liverelay.wakegrid import next_tick, sleep_to_tick, tick_at_or_after


def test_next_tick_is_the_next_multiple_after_now() -> None:
    assert next_tick(12.3, 1.0) == 13.0
    assert next_tick(13.0, 1.0) == 14.0  # on a tick: the next one, never "now" again
    assert next_tick(12.9999999999, 1.0) == 14.0  # float error around a tick counts as on it
    assert abs(next_tick(0.26, 0.25) - 0.5) < 1e-9


async def test_pollers_started_apart_wake_on_the_same_tick() -> None:
    loop = asyncio.get_running_loop()
    period = 0.2
    woke: list[float] = []

    async def poller() -> None:
        await sleep_to_tick(period)
        woke.append(loop.time())

    await sleep_to_tick(period)  # both start within one period: at its start and 50 ms in
    first = asyncio.create_task(poller())
    await asyncio.sleep(0.05)
    second = asyncio.create_task(poller())  # started 50 ms later, wakes with the first
    await asyncio.wait_for(asyncio.gather(first, second), timeout=5)
    tick = next_tick(woke[0] - period / 2, period)
    assert all(t >= tick - 0.002 for t in woke), (woke, tick)
    assert max(woke) - min(woke) < 0.02, woke


def test_tick_at_or_after_keeps_a_time_on_the_grid() -> None:
    assert tick_at_or_after(12.3, 0.25) == 12.5
    assert tick_at_or_after(12.5, 0.25) == 12.5  # on a tick: that tick
    assert tick_at_or_after(13.0, 1.0) == next_tick(12.5, 1.0)  # the two grids meet
