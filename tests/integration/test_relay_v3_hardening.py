"""Relay hardening: cancellation is never lost, stream ownership between V3 and V4,
secrets never shown. In-process against the real Hub with the scripted origins of
test_relay_v3_runner.py, plus real sockets where a real source or webhook is involved.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from tests.conftest import free_port, poll_until
from tests.integration.relay_helpers import webhook_receiver
from tests.integration.relay_runner_helpers import (
    KEY,
    Origins,
    Viewer,
    fast_settings,
    finish,
    make_pull,
    ondemand,
)

from liverelay.config import RelaySettings, WebhookSettings
from liverelay.hub import Hub, SourceKind, StreamKey
from liverelay.media.frame import Frame
from liverelay.relay.events import RelayEvents
from liverelay.relay.manager import RelayManager
from liverelay.relay.metrics import RelayMetrics
from liverelay.relay.pull import RelayPull
from liverelay.relay.webhooks import WebhookSender
from liverelay.sources import PullFunction, SourceError, open_source

pytestmark = pytest.mark.timeout(60)


# ---- 1. a cancel is never swallowed -----------------------------------------------------


async def cancel_races(
    start: Callable[[], Awaitable[Any]], fire: Callable[[], None], reset: Callable[[], None]
) -> list[Any]:
    """Cancel a task at every point around the moment what it awaits completes.

    asyncio.wait_for on 3.11 returns normally when the task is cancelled after the inner
    awaitable completed but before the task resumed: the cancel is lost. Whenever
    task.cancel() was accepted, the task must end cancelled. Returns what the tasks that
    finished before their cancel returned.
    """
    lost = []
    results = []
    for steps in range(8):
        reset()
        task = asyncio.create_task(start())
        await asyncio.sleep(0)  # the task is now parked on its await
        fire()
        for _ in range(steps):
            await asyncio.sleep(0)
        accepted = task.cancel()
        try:
            result = await task
        except asyncio.CancelledError:
            continue
        results.append(result)
        if accepted:
            lost.append(steps)
    assert not lost, f"cancel accepted but the task returned normally after {lost} loop steps"
    return results


def idle_pull(hub: Hub, source: PullFunction | None = None) -> RelayPull:
    """A fixed pull of one origin (nothing listens there); `source`, if given, stands for
    the real puller."""
    return RelayPull(
        key=KEY,
        kind="fixed",
        urls=["rtmp://127.0.0.1:1/live/s"],
        publication_factory=lambda: hub.publish(KEY, kind=SourceKind.RELAY_FIXED),
        settings=fast_settings(),
        open_source=open_source if source is None else (lambda _url: source),
    )


async def test_sleep_never_swallows_a_cancel(hub: Hub) -> None:
    pull = idle_pull(hub)
    await cancel_races(lambda: pull._sleep(30), pull._wake.set, pull._wake.clear)


async def test_stop_never_swallows_a_cancel_of_its_caller(hub: Hub) -> None:
    pull = idle_pull(hub)
    pull._running = True  # as while run() is active: stop() waits for `ended`
    await cancel_races(lambda: pull.stop("test"), pull.ended.set, pull.ended.clear)


async def test_hub_play_never_swallows_a_cancel_of_the_viewer(hub: Hub) -> None:
    ready = asyncio.Event()

    async def trigger(key: StreamKey, query: str) -> bool:
        await ready.wait()
        return True

    hub.play_trigger = trigger
    subs = await cancel_races(lambda: hub.play(KEY, protocol="t", timeout=30), ready.set, ready.clear)
    for sub in subs:  # viewers whose play completed before the cancel: the sink closes them
        sub.close()
    stream = hub.get(KEY)
    assert stream is None or stream.viewer_count == 0  # every cancelled viewer left the stream


async def test_cancel_while_closing_attempts_still_cancels_run(hub: Hub) -> None:
    """run() ends on its own (stop), and is cancelled while it waits for its origin
    connection to close: it must end cancelled, not return as if nothing happened."""
    closing = asyncio.Event()

    async def slow_to_close(url: str, sink: Any, *, settings: RelaySettings) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            closing.set()
            await asyncio.sleep(0.5)  # e.g. a TLS close or an ffmpeg being reaped
            raise

    pull = idle_pull(hub, slow_to_close)
    task = asyncio.create_task(pull.run())
    await poll_until(lambda: pull.attempts == 1, 2, "attempt started")
    await asyncio.sleep(0.05)
    pull._stop_reason = "test"
    pull._wake.set()
    await asyncio.wait_for(closing.wait(), 2)
    assert task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 3)
    assert task.cancelled()


async def test_an_attempt_slow_to_close_holds_run_for_at_most_two_seconds(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    """An origin connection slow to close once cancelled (a wedged close) is given its 2 s,
    cancelled once (a second cancel would cut its close short), and holds run() no longer:
    run() ends, and the straggler is named in a warning."""
    stuck: list[asyncio.Task[Any]] = []
    release = asyncio.Event()

    async def never_closes(url: str, sink: Any, *, settings: RelaySettings) -> None:
        task = asyncio.current_task()
        assert task is not None
        stuck.append(task)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await release.wait()
            raise

    pull = idle_pull(hub, never_closes)
    task = asyncio.create_task(pull.run())
    await poll_until(lambda: bool(stuck), 2, "attempt started")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="liverelay.relay"):
        await pull.stop("test")
        await asyncio.wait_for(task, 10)
    assert pull.ended.is_set() and pull.end_reason == "stopped: test"
    assert 1.5 <= time.monotonic() - started < 8  # bounded by the 2 s wait, not by the origin
    assert not stuck[0].done()
    warned = [r.getMessage() for r in caplog.records if "did not end within 2s" in r.getMessage()]
    assert len(warned) == 1 and str(KEY) in warned[0]
    release.set()
    await asyncio.wait_for(asyncio.wait({stuck[0]}), 5)
    assert stuck[0].cancelled()


# ---- 2. ownership: a fixed relay takes over a play pull; V3 never pulls a V4 stream -------


async def test_fixed_relay_takes_over_a_play_pull_and_viewers_continue(
    hub: Hub,
    sample_frames: list[Frame],
) -> None:
    play_origins = Origins(sample_frames, 1)
    fixed_origins = Origins(sample_frames, 1)
    fixed_origins.by_url = {u.replace(":100", ":200"): o for u, o in fixed_origins.by_url.items()}
    fixed_origins.urls = list(fixed_origins.by_url)
    play = make_pull(hub, play_origins, fast_settings())
    play_task = asyncio.create_task(play.run())
    await asyncio.wait_for(play.first_media.wait(), 5)
    sub = await hub.play(KEY, protocol="t", timeout=2)
    assert sub is not None
    viewer = Viewer(sub)
    await viewer.frames_after(20)
    # The fixed relay (between sources until now) gets media: it takes the stream.
    fixed = make_pull(hub, fixed_origins, fast_settings(), kind="fixed")
    fixed_task = asyncio.create_task(fixed.run())
    await asyncio.wait_for(play_task, 5)
    assert play.end_reason == "preempted"
    assert play_origins[0].streaming == 0  # the V3 origin connection is closed
    assert fixed.state == "up" and fixed.last_error is None  # not "busy: ..."
    stream = hub.get(KEY)
    assert stream is not None and stream.source_kind is SourceKind.RELAY_FIXED
    await viewer.more_frames(30)
    assert not viewer.eof.is_set()
    viewer.assert_monotonic()
    assert stream.splices >= 1  # spliced at the fixed relay's keyframe
    await viewer.close()
    await finish(fixed, fixed_task)


async def test_play_never_starts_a_v3_pull_for_a_fixed_relay_stream(
    hub: Hub,
    sample_frames: list[Frame],
) -> None:
    v3_origins = Origins(sample_frames, 1)
    relays = ondemand(hub, v3_origins, fast_settings(start_timeout_s=2.0))
    fixed_origins = Origins(sample_frames, 1)
    fixed_origins.by_url = {u.replace(":100", ":200"): o for u, o in fixed_origins.by_url.items()}
    fixed_origins.urls = list(fixed_origins.by_url)
    fixed_origins[0].alive = False  # the fixed relay is retrying: no source in the hub
    retry_fast = fast_settings(backoff_initial_s=0.2, backoff_max_s=0.2)
    fixed = make_pull(hub, fixed_origins, retry_fast, kind="fixed")
    fixed_task = asyncio.create_task(fixed.run())
    relays.fixed_owner = lambda key: fixed if key == KEY else None
    try:
        # Nothing comes within the start timeout: not found, and no V3 origin connection.
        started = time.monotonic()
        assert await hub.play(KEY, protocol="t", timeout=5) is None
        assert 1.8 <= time.monotonic() - started < 4.5  # the 2 s start timeout, not play's 5 s
        assert v3_origins[0].connects == 0 and not relays.pulls
        # The viewer waits for the fixed relay's media instead of starting a V3 pull.
        waiting = asyncio.create_task(hub.play(KEY, protocol="t", timeout=5))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        fixed_origins[0].alive = True
        sub = await asyncio.wait_for(waiting, 3)
        assert sub is not None
        viewer = Viewer(sub)
        await viewer.frames_after(10)
        assert v3_origins[0].connects == 0 and not relays.pulls
        stream = hub.get(KEY)
        assert stream is not None and stream.source_kind is SourceKind.RELAY_FIXED
        await viewer.close()
        # Not owned any more (task deleted / window over): V3 applies again.
        await fixed.stop("deleted")
        relays.fixed_owner = lambda key: None
        await poll_until(lambda: hub.get(KEY) is None or not hub.get(KEY).has_source, 2, "stream released")
        sub = await hub.play(KEY, protocol="t", timeout=5)
        assert sub is not None and v3_origins[0].connects == 1
        sub.close()
    finally:
        await finish(fixed, fixed_task)
        await relays.close()


async def test_relay_manager_reports_open_v4_tasks_as_owners(hub: Hub) -> None:
    from liverelay.config import Settings

    manager = RelayManager(Settings(), hub, None, CollectorRegistry())  # type: ignore[arg-type]  # no store: never started
    assert manager.ondemand.fixed_owner(KEY) is None  # no scheduler yet
    task = SimpleNamespace(phase="open", runs_here=True)
    manager.scheduler = SimpleNamespace(tasks={(KEY.vhost, KEY.app, KEY.name): task})
    assert manager.ondemand.fixed_owner(KEY) is task
    assert manager.ondemand.fixed_owner(StreamKey("vh", "live", "other")) is None
    task.runs_here = False  # in a cluster, a task another node holds the lease of is not ours
    assert manager.ondemand.fixed_owner(KEY) is None
    task.runs_here = True
    task.phase = "before"  # a window not open yet does not own the stream
    assert manager.ondemand.fixed_owner(KEY) is None


# ---- 3. secrets never shown ---------------------------------------------------------------


async def test_source_secrets_stay_out_of_status_events_logs_and_webhooks(
    hub: Hub,
    sample_frames: list[Frame],
    caplog: pytest.LogCaptureFixture,
) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response()

    async with webhook_receiver(hook) as url:
        sender = WebhookSender(WebhookSettings(url=url, timeout_s=1.0, retries=0))
        sender.start()

        # Origin 0: a real HTTP-FLV source against a closed port (its error quotes the URL);
        # origin 1: the scripted origin. Both URLs carry credentials.
        dead = f"http://viewer:Pa55w0rd@127.0.0.1:{free_port()}/live/s.flv?auth_key=SEKRIT-A&x=1"
        alive_origins = Origins(sample_frames, 1)
        alive = alive_origins.urls[0] + "?token=SEKRIT-B&passphrase=SEKRIT-C"

        def pick(url: str) -> Any:
            return open_source(url) if url == dead else alive_origins.open_source(url)

        pull = RelayPull(
            key=KEY,
            kind="fixed",
            urls=[dead, alive],
            publication_factory=lambda: hub.publish(KEY, kind=SourceKind.RELAY_FIXED),
            settings=fast_settings(failback_probe_interval_s=0.3),
            events=RelayEvents(RelayMetrics(None), sender),
            open_source=pick,
        )
        caplog.set_level(logging.DEBUG)
        task = asyncio.create_task(pull.run())
        try:
            await asyncio.wait_for(pull.first_media.wait(), 5)
            await asyncio.sleep(1.0)  # a few fail-back probes of the dead origin
            row = pull.status().wire()
            task_names = [t.get_name() for t in asyncio.all_tasks()]  # shown in asyncio's own warnings
            assert row["SourceUrl"].endswith("?token=***&passphrase=***") and row["SourceIndex"] == 1
            assert row["LastError"].startswith("connect") and "auth_key=***" in row["LastError"]
            await finish(pull, task)
            await poll_until(lambda: any(e["Event"] == "stopped" for e in received), 5, "webhooks")
        finally:
            await sender.close()
    events = {e["Event"] for e in received}
    assert {"origin_failed", "relay_started", "stopped"} <= events
    shown = " ".join([str(row), str(received), caplog.text, *task_names])
    for secret in ("SEKRIT", "Pa55w0rd"):
        assert secret not in shown, f"{secret} leaked"
    assert "auth_key=***" in str(received) and "viewer:***@" in str(received)


# ---- 4. fail-back hold-down, end to end ---------------------------------------------------


async def test_an_origin_that_keeps_dying_is_not_failed_back_to_at_every_probe(
    hub: Hub,
    sample_frames: list[Frame],
) -> None:
    origins = Origins(sample_frames, 2)
    flappy = origins[0]
    connects: list[float] = []

    async def dies_soon(url: str, sink: Any, *, settings: RelaySettings) -> None:
        connects.append(time.monotonic())
        try:
            async with asyncio.timeout(0.3):  # delivers (keyframe first), then dies
                await flappy.pull(url, sink, settings=settings)
        except TimeoutError:
            raise SourceError("eof", "origin went away") from None

    def pick(url: str) -> Any:
        return dies_soon if url == origins.urls[0] else origins.open_source(url)

    # Probe every 0.3 s; flap window 0.9 s: a comeback that dies within it doubles the wait.
    pull = RelayPull(
        key=KEY,
        kind="fixed",
        urls=origins.urls,
        publication_factory=lambda: hub.publish(KEY, kind=SourceKind.RELAY_FIXED),
        settings=fast_settings(failback_probe_interval_s=0.3),
        open_source=pick,
    )
    task = asyncio.create_task(pull.run())
    sub = await hub.play(KEY, protocol="t", timeout=1)
    if sub is None:  # the stream appears at the first frame
        await asyncio.wait_for(pull.first_media.wait(), 5)
        sub = await hub.play(KEY, protocol="t", timeout=1)
    assert sub is not None
    viewer = Viewer(sub)
    await asyncio.sleep(5.0)
    gaps = [b - a for a, b in itertools.pairwise(connects)]
    # Without the hold-down origin 0 is back every ~0.6 s (life 0.3 + probe interval 0.3):
    # ~9 connections in 5 s, evenly spaced. With it the wait after each flap doubles
    # (0.3 + 0.3, 0.3 + 0.6, 0.3 + 1.2, 0.3 + 2.4 ...): 4 connections, growing gaps.
    assert 3 <= len(connects) <= 5, gaps
    assert all(b > a for a, b in itertools.pairwise(gaps[1:])), gaps
    assert not viewer.eof.is_set() and origins[1].streaming == 1
    viewer.assert_monotonic()
    await viewer.close()
    await finish(pull, task)
