"""A background task that runs one round now and then: every `interval()` seconds, or
sooner when woken (membership heartbeats, lease rounds)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from ..tasks import cancel_and_wait


class Rounds:
    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[None]],
        interval: Callable[[], float],
        *,
        min_gap_s: float = 0.0,
    ) -> None:
        self.name = name
        self._step = step
        self._interval = interval
        self._min_gap_s = min_gap_s  # a storm of wake-ups must not become a storm of rounds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, *, wait_first: bool = False) -> None:
        if wait_first:
            self._wake.clear()
        else:
            self._wake.set()
        self._task = asyncio.create_task(self._run(), name=self.name)

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        await cancel_and_wait(self._task, f"the {self.name} rounds")
        self._task = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval()):
                    await self._wake.wait()
            self._wake.clear()
            await self._step()  # the step logs its own faults; one escaping ends the rounds
            if self._min_gap_s:
                await asyncio.sleep(self._min_gap_s)
