"""Ending a background task: the one copy of "cancel it, wait until it has ended, and say
if it had failed".

Two shapes were written around the project and each was wrong one way:
`suppress(CancelledError)` around `await task` also swallows a cancel of the caller
itself (a shutdown that was told to stop goes on), and lets the task's own fault escape
from close(); `asyncio.wait({task})` propagates the caller's cancel but never retrieves
the task's outcome, so a fault surfaces only as asyncio's "exception was never retrieved"
at garbage collection, without context.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger("liverelay.tasks")


async def cancel_and_wait(task: asyncio.Task[T] | None, what: str, *, logger: logging.Logger = log) -> None:
    """Cancel `task` (None: nothing to do) and return once it has ended.

    The task's end is retrieved here: a cancel is the expected end and says nothing; any
    other exception is logged once on `logger`, naming `what`, and not raised (close()
    goes on closing). A cancel of the caller while it waits propagates as usual; the
    task, already cancelled, then ends on its own.
    """
    if task is None:
        return
    task.cancel()  # no-op on a task that has already ended: its outcome is still read below
    await asyncio.wait({task})
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error("%s failed before it was stopped: %r", what, exc, exc_info=exc)
