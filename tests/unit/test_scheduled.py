"""relay.scheduled: window arithmetic, timers at the window edges, updates, and the store seam.

The pull is replaced by a recording stand-in (the seam `pull_factory`): these tests are
about *when* a fixed relay runs and what it is told, not about pulling media (the
integration tests in tests/integration/test_relay_v4*.py do that with real origins).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liverelay.config import Settings
from liverelay.relay.scheduled import FixedRelayScheduler, FixedRelaySpec, FixedTask, next_edge, window_phase
from liverelay.schemas.status import RelayState, RelayStatusRow
from liverelay.store import open_store

# -- pure window arithmetic ------------------------------------------------------------


def test_window_phase_cases() -> None:
    assert window_phase(None, None, 1e9) == "open"  # permanent
    assert window_phase(100, 200, 50) == "before"
    assert window_phase(100, 200, 100) == "open"  # start is inclusive
    assert window_phase(100, 200, 199.999) == "open"
    assert window_phase(100, 200, 200) == "over"  # end is exclusive
    assert window_phase(100, 200, 10_000) == "over"


def test_next_edge_cases() -> None:
    assert next_edge(None, None, 5) == ("open", None)
    assert next_edge(100, 200, 40) == ("before", 60)
    assert next_edge(100, 200, 150) == ("open", 50)
    assert next_edge(100, 200, 250) == ("over", None)


@given(
    start=st.integers(0, 10**10),
    span=st.integers(1, 604_800),
    now=st.floats(0, 2 * 10**10, allow_nan=False),
)
def test_window_phase_agrees_with_next_edge(start: int, span: int, now: float) -> None:
    end = start + span
    phase, delay = next_edge(start, end, now)
    assert phase == window_phase(start, end, now)
    if phase == "before":
        assert delay is not None and delay > 0 and now + delay == pytest.approx(start)
    elif phase == "open":
        assert start <= now < end and delay is not None and delay > 0
    else:
        assert now >= end and delay is None


# -- a task on a fake wall clock driven by the real loop timers ------------------------


class RecordingPull:
    """Stands in for RelayPull: records what the task asks of it."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = list(urls)
        self.url_updates: list[list[str]] = []
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.stop_reason: str | None = None
        self._stopped = asyncio.Event()

    async def run(self) -> None:
        self.started_at = time.monotonic()
        await self._stopped.wait()

    def update_urls(self, urls: list[str]) -> None:
        self.url_updates.append(list(urls))
        self.urls = list(urls)

    async def stop(self, reason: str) -> None:
        self.stopped_at = time.monotonic()
        self.stop_reason = reason
        self._stopped.set()

    def status(self) -> RelayStatusRow:
        return RelayStatusRow(state=RelayState.UP, source_url=self.urls[0], source_index=0, frames=7)


class Harness:
    """A FixedTask whose wall clock reads `t0_wall` at the start and advances with the loop."""

    def __init__(
        self, spec: FixedRelaySpec, t0_wall: float, pull_class: type[RecordingPull] | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        self.pull_class = pull_class or RecordingPull
        t0_loop = loop.time()
        self.pulls: list[RecordingPull] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.task = FixedTask(
            spec,
            pull_factory=self._make_pull,
            emit=lambda name, task, **fields: self.events.append((name, fields)),
            clock=lambda: t0_wall + (loop.time() - t0_loop),
        )

    def _make_pull(self, task: FixedTask) -> RecordingPull:
        pull = self.pull_class(list(task.spec.src_addrs))
        self.pulls.append(pull)
        return pull  # type: ignore[return-value]

    def event_names(self) -> list[str]:
        return [name for name, _ in self.events]


def _spec(
    start: int | None = None, end: int | None = None, urls: tuple[str, ...] = ("rtmp://a/x/y",)
) -> FixedRelaySpec:
    return FixedRelaySpec("1700000000000123456", "vh", "pull.example.com", "live", "s1", urls, start, end)


async def _until(cond: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_permanent_task_starts_at_once_and_stops_on_close() -> None:
    h = Harness(_spec(), t0_wall=1000.0)
    h.task.schedule()
    await _until(lambda: h.pulls and h.pulls[0].started_at is not None)
    assert h.task.state == "up"
    assert h.event_names() == ["task_started"]
    await h.task.close("deleted")
    assert h.pulls[0].stop_reason == "deleted"
    assert h.task.state == "ended"
    assert h.event_names() == ["task_started", "task_ended"]


async def test_future_window_runs_only_between_its_edges() -> None:
    # Window [1001, 1002) seen from wall time 1000.6: opens in 0.4 s, closes 1 s later.
    h = Harness(_spec(1001, 1002), t0_wall=1000.6)
    t0 = time.monotonic()
    h.task.schedule()
    assert h.task.state == "scheduled" and not h.pulls
    row = h.task.status().wire()
    assert row["State"] == "scheduled" and row["NextStart"] == 1001
    await _until(lambda: h.pulls and h.pulls[0].started_at is not None)
    started = h.pulls[0].started_at - t0  # type: ignore[operator]
    assert 0.35 <= started <= 0.6, started
    await _until(lambda: h.pulls[0].stopped_at is not None)
    stopped = h.pulls[0].stopped_at - t0  # type: ignore[operator]
    assert 1.35 <= stopped <= 1.6, stopped
    assert h.task.state == "ended" and h.task.status().wire()["NextStart"] is None
    assert h.event_names() == ["task_scheduled", "task_started", "task_ended"]
    assert len(h.pulls) == 1
    await h.task.close()


async def test_window_already_over_never_starts() -> None:
    h = Harness(_spec(100, 200), t0_wall=5000.0)
    h.task.schedule()
    await asyncio.sleep(0.05)
    assert not h.pulls
    assert h.task.state == "ended"
    assert h.events == [("task_ended", {"Reason": "window already over"})]
    await h.task.close()


async def test_update_sources_while_running_goes_to_the_same_pull() -> None:
    h = Harness(_spec(urls=("rtmp://a/x/y", "rtmp://b/x/y")), t0_wall=1000.0)
    h.task.schedule()
    await _until(lambda: bool(h.pulls))
    h.task.update(replace(h.task.spec, src_addrs=("rtmp://b/x/y", "srt://c:1")))
    assert len(h.pulls) == 1  # not restarted: RelayPull decides whether to switch
    assert h.pulls[0].url_updates == [["rtmp://b/x/y", "srt://c:1"]]
    h.task.update(replace(h.task.spec))  # nothing new: nothing to tell
    assert h.pulls[0].url_updates == [["rtmp://b/x/y", "srt://c:1"]]
    await h.task.close()


async def test_update_to_a_future_window_stops_then_starts_on_time() -> None:
    h = Harness(_spec(), t0_wall=1000.0)
    h.task.schedule()
    await _until(lambda: bool(h.pulls))
    t0 = time.monotonic()
    h.task.update(replace(h.task.spec, start_time=1001, end_time=1100))  # opens ~1 s from the start
    await _until(lambda: h.pulls[0].stopped_at is not None)
    assert h.pulls[0].stop_reason == "rescheduled"
    assert h.task.state == "scheduled"
    await _until(lambda: len(h.pulls) == 2 and h.pulls[1].started_at is not None)
    assert 0.7 <= h.pulls[1].started_at - t0 <= 1.3  # type: ignore[operator]
    assert h.task.state == "up"
    await h.task.close()


async def test_update_from_future_window_to_permanent_starts_now() -> None:
    h = Harness(_spec(5000, 6000), t0_wall=1000.0)
    h.task.schedule()
    assert h.task.state == "scheduled"
    h.task.update(replace(h.task.spec, start_time=None, end_time=None))
    await _until(lambda: h.pulls and h.pulls[0].started_at is not None, timeout=1.0)
    await h.task.close()


async def test_update_to_a_past_window_ends_the_task() -> None:
    h = Harness(_spec(), t0_wall=1000.0)
    h.task.schedule()
    await _until(lambda: bool(h.pulls))
    h.task.update(replace(h.task.spec, start_time=100, end_time=200))
    await _until(lambda: h.pulls[0].stopped_at is not None, timeout=1.0)
    assert h.task.state == "ended"
    assert h.event_names()[-1] == "task_ended"
    await h.task.close()


class EndingPull(RecordingPull):
    """A pull whose run() gives up by itself (RelayPull should not, but the task must cope)."""

    end_reason = "origins_unavailable"
    first_media = asyncio.Event()  # never set: no media before it ended

    async def run(self) -> None:
        self.started_at = time.monotonic()
        await asyncio.sleep(0.05)


async def test_a_pull_that_ends_early_is_restarted_after_a_pause() -> None:
    h = Harness(_spec(), t0_wall=1000.0, pull_class=EndingPull)
    h.task.schedule()
    await _until(lambda: len(h.pulls) == 1 and h.task.pull is None)
    row = h.task.status().wire()
    assert row["State"] == "retrying" and row["LastError"] == "origins_unavailable"
    t0 = time.monotonic()
    await _until(lambda: len(h.pulls) == 2, timeout=3.0)
    assert 0.8 <= time.monotonic() - t0 <= 2.5  # the first pause is 1 s, not a hot loop
    assert h.event_names() == ["task_started"]  # a restart is not a new start of the task
    await h.task.close()


async def test_deleting_a_scheduled_task_reports_it_ended() -> None:
    h = Harness(_spec(5000, 6000), t0_wall=1000.0)
    h.task.schedule()
    await h.task.close("deleted")
    assert h.event_names() == ["task_scheduled", "task_ended"]
    assert h.task.state == "ended" and not h.pulls


async def test_status_row_merges_the_pull_status() -> None:
    h = Harness(_spec(), t0_wall=1000.0)
    h.task.schedule()
    await _until(lambda: bool(h.pulls))
    row = h.task.status(viewers=3).wire()
    expected_keys = {
        "Type",
        "TaskId",
        "Vhost",
        "Domain",
        "App",
        "Stream",
        "State",
        "SourceUrl",
        "SourceIndex",
        "Attempts",
        "LastError",
        "UpSince",
        "NextStart",
        "Bytes",
        "Bitrate",
        "Frames",
        "Switches",
        "Viewers",
    }
    assert expected_keys <= row.keys()
    assert row["Type"] == "fixed" and row["Viewers"] == 3 and row["Frames"] == 7
    assert row["Domain"] == "pull.example.com" and row["Vhost"] == "vh" and row["State"] == "up"
    await h.task.close()


# -- the scheduler against a real store ------------------------------------------------------


class _NoHub:
    def get(self, key: object) -> None:
        return None


def _rows(scheduler: FixedRelayScheduler) -> list[dict[str, Any]]:
    return [row.wire() for row in scheduler.status()]


async def test_scheduler_follows_the_store_and_resumes_after_restart(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    store = await open_store(settings)
    pulls: list[RecordingPull] = []

    def factory(task: FixedTask) -> RecordingPull:
        pulls.append(RecordingPull(list(task.spec.src_addrs)))
        return pulls[-1]

    try:
        await store.add_domains("vh", [("pull.example.com", "pull-flv", "cn")])
        now = int(time.time())
        # One written before the scheduler starts (the restart case), one after.
        await store.create_relay_v4(
            "vh",
            "live",
            "early",
            domain="pull.example.com",
            src_addrs=["rtmp://a/live/early"],
            start_time=None,
            end_time=None,
        )
        scheduler = FixedRelayScheduler(_NoHub(), store, Settings().relay, None, pull_factory=factory)  # type: ignore[arg-type]
        await scheduler.start()
        await store.create_relay_v4(
            "vh",
            "live",
            "later",
            domain="pull.example.com",
            src_addrs=["rtmp://a/live/later"],
            start_time=now + 3600,
            end_time=now + 7200,
        )
        await store.create_relay_v4(
            "vh",
            "live",
            "past",
            domain="pull.example.com",
            src_addrs=["rtmp://a/live/past"],
            start_time=now - 7200,
            end_time=now - 3600,
        )
        states = {row["Stream"]: row["State"] for row in _rows(scheduler)}
        assert states == {"early": "up", "later": "scheduled", "past": "ended"}
        assert [p.urls for p in pulls] == [["rtmp://a/live/early"]]

        await store.update_relay_v4(
            "vh", "live", "early", src_addrs=["rtmp://b/live/early"], start_time=None, end_time=None
        )
        assert pulls[0].url_updates == [["rtmp://b/live/early"]]

        await store.delete_relay_v4("vh", "live", "early")
        await _until(lambda: pulls[0].stopped_at is not None, timeout=1.0)
        assert {row["Stream"] for row in _rows(scheduler)} == {"later", "past"}
        await scheduler.close()

        # "Restart": a new scheduler on the same store picks up what is configured.
        pulls.clear()
        await store.update_relay_v4(
            "vh", "live", "later", src_addrs=["rtmp://a/live/later"], start_time=now - 10, end_time=now + 3600
        )
        scheduler = FixedRelayScheduler(_NoHub(), store, Settings().relay, None, pull_factory=factory)  # type: ignore[arg-type]
        await scheduler.start()
        states = {row["Stream"]: row["State"] for row in _rows(scheduler)}
        assert states == {"later": "up", "past": "ended"}
        assert [p.urls for p in pulls] == [["rtmp://a/live/later"]]
        await scheduler.close()
        assert pulls[0].stopped_at is not None
    finally:
        await store.close()


class SlowStopPull(RecordingPull):
    """Takes a while to release the stream, like a pull closing sockets and a publication."""

    stop_finished_at: float | None = None

    async def stop(self, reason: str) -> None:
        await asyncio.sleep(0.3)
        await super().stop(reason)
        self.stop_finished_at = time.monotonic()


async def test_recreated_stream_starts_only_after_the_deleted_one_released_it() -> None:
    from liverelay.store import ChangeEvent, RelayV4Config

    pulls: list[SlowStopPull] = []

    def factory(task: FixedTask) -> SlowStopPull:
        pulls.append(SlowStopPull(list(task.spec.src_addrs)))
        return pulls[-1]

    scheduler = FixedRelayScheduler(_NoHub(), None, Settings().relay, None, pull_factory=factory)  # type: ignore[arg-type]
    key = ("vh", "live", "again")

    def config(task_id: str) -> RelayV4Config:
        return RelayV4Config(*key, "pull.example.com", ("rtmp://a/live/x",), None, None, task_id, 0, 0)

    scheduler._on_change(ChangeEvent("relay_v4", "added", key, config("1")))
    await _until(lambda: pulls and pulls[0].started_at is not None)
    scheduler._on_change(ChangeEvent("relay_v4", "deleted", key, None))
    scheduler._on_change(ChangeEvent("relay_v4", "added", key, config("2")))
    assert [row["TaskId"] for row in _rows(scheduler)] == ["2"]
    await _until(lambda: len(pulls) == 2 and pulls[1].started_at is not None)
    assert pulls[0].stop_finished_at is not None
    assert pulls[1].started_at >= pulls[0].stop_finished_at  # type: ignore[operator]
    await scheduler.close()
    assert pulls[1].stop_reason == "node stopping"
