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
import functools
import logging
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("liverelay.tasks")


async def cancel_and_wait(task: asyncio.Task[T] | None, what: str, *, logger: logging.Logger = log) -> None:
    """Cancel `task` (None: nothing to do) and return once it has ended.

    The task's end is retrieved here: a cancel is the expected end and says nothing; any
    other exception is logged once on `logger`, naming `what`, and not raised (close()
    goes on closing). A cancel of the caller while it waits propagates as usual; the
    task, already cancelled, then ends on its own.
    """
    if task is not None:
        await cancel_all_and_wait({task: what}, logger=logger)


async def cancel_all_and_wait(
    tasks: Mapping[asyncio.Task[Any], str],
    *,
    logger: logging.Logger = log,
    timeout: float | None = None,
    expected: tuple[type[BaseException], ...] = (),
) -> None:
    """cancel_and_wait for several tasks at once ({task: what}): each is cancelled once,
    all before the first await (a cancel of the caller cannot leave one running).

    An exception of the `expected` types ends a task quietly, like a cancel (e.g. a
    source's own error, reported where it is handled). `timeout` (seconds; None: no bound)
    bounds the wait for tasks slow to end once cancelled: past it a warning names each one
    still running, the call returns, and such a task's end is still read (a fault logged)
    whenever it comes.
    """
    if not tasks:
        return
    for task in tasks:
        task.cancel()  # no-op on a task that has already ended: its outcome is still read below
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        what = tasks[task]
        logger.warning("%s did not end within %gs of its cancel; it is left to end on its own", what, timeout)
        task.add_done_callback(functools.partial(_read_end, what=what, logger=logger, expected=expected))
    for task in done:
        _read_end(task, tasks[task], logger, expected)


def _read_end(
    task: asyncio.Task[Any], what: str, logger: logging.Logger, expected: tuple[type[BaseException], ...]
) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, expected):
        logger.error("%s failed before it was stopped: %r", what, exc, exc_info=exc)
