"""cancel_and_wait: a cancelled task ends quietly, a failed one is logged (not raised), a
cancel of the caller still propagates, and a task that had already ended is read;
cancel_all_and_wait: expected faults end quietly, a bounded wait names who did not end."""

from __future__ import annotations

import asyncio
import logging

import pytest

from liverelay.cluster.rounds import Rounds
from liverelay.tasks import cancel_all_and_wait, cancel_and_wait


async def test_a_running_task_is_cancelled_and_ends_quietly(caplog: pytest.LogCaptureFixture) -> None:
    task = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)
    with caplog.at_level(logging.DEBUG, logger="liverelay.tasks"):
        await cancel_and_wait(task, "the sleeper")
    assert task.cancelled()
    assert caplog.records == []


async def test_none_is_nothing_to_do() -> None:
    await cancel_and_wait(None, "nothing")


async def test_a_task_that_failed_is_logged_with_what_it_was(caplog: pytest.LogCaptureFixture) -> None:
    async def boom() -> None:
        raise ValueError("bad row")

    task = asyncio.create_task(boom())
    await asyncio.wait({task})  # it has ended with its fault before anyone stops it
    with caplog.at_level(logging.ERROR, logger="liverelay.tasks"):
        await cancel_and_wait(task, "the boom loop")
    [record] = caplog.records
    assert "the boom loop" in record.getMessage() and "bad row" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)


async def test_a_fault_while_ending_is_logged_on_the_given_logger(caplog: pytest.LogCaptureFixture) -> None:
    started = asyncio.Event()

    async def cleanup_fails() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            raise RuntimeError("cleanup broke")

    task = asyncio.create_task(cleanup_fails())
    await started.wait()
    mine = logging.getLogger("liverelay.test_tasks")
    with caplog.at_level(logging.ERROR, logger=mine.name):
        await cancel_and_wait(task, "the cleaner", logger=mine)
    assert [r.name for r in caplog.records] == [mine.name]
    assert "cleanup broke" in caplog.records[0].getMessage()


async def test_a_cancel_of_the_caller_propagates_while_the_task_winds_down() -> None:
    # The task takes a while to end once cancelled; the caller is cancelled meanwhile:
    # the caller must see its own cancel (suppress(CancelledError) used to eat it).
    ending = asyncio.Event()
    release = asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            ending.set()
            await release.wait()
            raise

    task = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)
    closer = asyncio.create_task(cancel_and_wait(task, "the slow one"))
    async with asyncio.timeout(10):
        await ending.wait()
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(10):
            await closer
    assert closer.cancelled()
    release.set()
    async with asyncio.timeout(10):
        await asyncio.wait({task})
    assert task.cancelled()


async def test_rounds_close_logs_a_step_fault_instead_of_raising_it(caplog: pytest.LogCaptureFixture) -> None:
    ran = asyncio.Event()

    async def step() -> None:
        ran.set()
        raise OSError("store gone")

    rounds = Rounds("probe", step, lambda: 3600.0)
    rounds.start()  # the first round runs at once and its fault ends the rounds
    async with asyncio.timeout(10):
        await ran.wait()
    with caplog.at_level(logging.ERROR, logger="liverelay.tasks"):
        await rounds.close()  # before: the step's OSError came out of close()
    [record] = caplog.records
    assert "the probe rounds" in record.getMessage() and "store gone" in record.getMessage()


async def test_an_expected_fault_ends_quietly(caplog: pytest.LogCaptureFixture) -> None:
    async def source_error() -> None:
        raise ConnectionResetError("origin hung up")

    task = asyncio.create_task(source_error())
    await asyncio.wait({task})
    with caplog.at_level(logging.DEBUG, logger="liverelay.tasks"):
        await cancel_all_and_wait({task: "the attempt"}, expected=(ConnectionError,))
    assert caplog.records == []


async def test_a_task_slow_to_end_is_waited_for_at_most_timeout(caplog: pytest.LogCaptureFixture) -> None:
    # The wait is bounded; a warning names the task, and its later fault is still logged.
    release = asyncio.Event()

    async def ignores_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await release.wait()
            raise RuntimeError("closed badly") from None

    task = asyncio.create_task(ignores_cancel())
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="liverelay.tasks"):
        async with asyncio.timeout(10):
            await cancel_all_and_wait({task: "the stubborn one"}, timeout=0.05)
        assert not task.done()
        [warning] = caplog.records
        assert warning.levelno == logging.WARNING and "the stubborn one" in warning.getMessage()
        release.set()
        async with asyncio.timeout(10):
            await asyncio.wait({task})
        await asyncio.sleep(0)  # the done callback runs on the next loop step
    [_, error] = caplog.records
    assert error.levelno == logging.ERROR and "closed badly" in error.getMessage()
