"""RelayPull and OnDemandRelays in-process, against the real Hub, fed by scripted origins.

The origins replay the real ffmpeg sample (decoded with media.flv) in real time through
the same `pull(url, sink, *, settings)` seam the network sources use, and can be killed,
stalled and revived at will, so failover, fail-back, linger and config changes are
exercised deterministically and fast. The same behaviours over real sockets and real
nodes are in test_relay_v3_nodes.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp import web
from tests.conftest import poll_until
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

from liverelay.config import WebhookSettings
from liverelay.hub import Hub, SourceKind, StreamKey
from liverelay.media.frame import Frame
from liverelay.relay.events import RelayEvents
from liverelay.relay.metrics import RelayMetrics
from liverelay.relay.pull import RelayPull
from liverelay.relay.webhooks import QUEUE_MAX, WebhookSender
from liverelay.store.bus import ChangeEvent
from liverelay.store.models import RelayGroup, RelayServer, RelayV3Config

pytestmark = pytest.mark.timeout(60)


async def test_first_origin_dead_second_serves(hub: Hub, sample_frames: list[Frame]) -> None:
    origins = Origins(sample_frames, 2)
    origins[0].alive = False
    pull = make_pull(hub, origins, fast_settings())
    task = asyncio.create_task(pull.run())
    await asyncio.wait_for(pull.first_media.wait(), 5)
    row = pull.status().wire()
    assert (row["SourceIndex"], row["State"], row["Attempts"]) == (1, "up", 2)
    assert row["LastError"].startswith("connect")
    sub = await hub.play(KEY, protocol="test", timeout=1)
    assert sub is not None
    viewer = Viewer(sub)
    await viewer.frames_after(30)
    assert pull.status().wire()["Frames"] > 30 and pull.status().wire()["Bytes"] > 0
    await finish(pull, task)
    await asyncio.wait_for(viewer.eof.wait(), 2)  # stop closes the publication: viewers get EOF


async def test_every_origin_dead_play_pull_gives_up_after_one_round(
    hub: Hub, sample_frames: list[Frame]
) -> None:
    origins = Origins(sample_frames, 3)
    for i in range(3):
        origins[i].alive = False
    pull = make_pull(hub, origins, fast_settings())
    started = time.monotonic()
    await asyncio.wait_for(pull.run(), 5)
    assert time.monotonic() - started < 2.5  # one round; start_timeout_s (4 s) would mean retrying
    assert pull.end_reason == "unavailable"
    assert [origins[i].connects for i in range(3)] == [1, 1, 1]
    assert hub.get(KEY) is None  # never looked present


async def test_fixed_pull_keeps_retrying_with_backoff(hub: Hub, sample_frames: list[Frame]) -> None:
    origins = Origins(sample_frames, 2)
    origins[0].alive = origins[1].alive = False
    pull = make_pull(hub, origins, fast_settings(backoff_initial_s=0.1, backoff_max_s=0.2), kind="fixed")
    task = asyncio.create_task(pull.run())
    await asyncio.sleep(1.2)
    assert not task.done()
    # 1.2 s with rounds spaced 0.1, 0.2, 0.2, ...: several rounds, but bounded by the backoff.
    assert 3 <= origins[0].connects <= 8, origins[0].connects
    assert pull.status().wire()["State"] in ("retrying", "starting")
    origins[1].alive = True
    await asyncio.wait_for(pull.first_media.wait(), 3)
    assert pull.status().wire()["SourceIndex"] == 1
    await finish(pull, task)


async def test_midstream_failover_and_failback_keep_the_viewer(hub: Hub, sample_frames: list[Frame]) -> None:
    origins = Origins(sample_frames, 2)
    metrics = RelayMetrics(None)
    pull = make_pull(hub, origins, fast_settings(), events=RelayEvents(metrics))
    task = asyncio.create_task(pull.run())
    await asyncio.wait_for(pull.first_media.wait(), 5)
    sub = await hub.play(KEY, protocol="test", timeout=1)
    assert sub is not None
    viewer = Viewer(sub)
    await viewer.frames_after(20)

    origins[0].alive = False  # origin 0 goes away mid-stream
    before = len(viewer.media())
    await poll_until(
        lambda: pull.status().wire()["SourceIndex"] == 1 and pull.status().wire()["State"] == "up",
        5,
        "failover",
    )
    await viewer.frames_after(before + 60, timeout=8)
    assert pull.status().wire()["Switches"] == 1
    failover_gap = viewer.max_gap()
    print(f"\nfailover: largest gap between video frames at the viewer {failover_gap * 1000:.0f} ms")

    origins[0].alive = True  # it comes back: fail-back at a keyframe
    await poll_until(lambda: pull.status().wire()["SourceIndex"] == 0, 8, "fail-back")
    await viewer.more_frames(30)
    row = pull.status().wire()
    assert row["Switches"] == 2 and row["State"] == "up"
    assert origins[1].streaming == 0, "the lower-priority origin was not released"
    assert not viewer.eof.is_set()
    viewer.assert_monotonic()
    assert metrics.failovers.labels("failover")._value.get() == 1
    assert metrics.failovers.labels("failback")._value.get() == 1
    assert metrics.starts._value.get() == 1
    await finish(pull, task)
    await viewer.close()


async def test_stalled_origin_fails_over_after_no_media_timeout(hub: Hub, sample_frames: list[Frame]) -> None:
    origins = Origins(sample_frames, 2)
    pull = make_pull(hub, origins, fast_settings(failback=False, no_media_timeout_s=0.5))
    task = asyncio.create_task(pull.run())
    await asyncio.wait_for(pull.first_media.wait(), 5)
    origins[0].stalled = True  # connection kept, nothing sent
    stalled_at = time.monotonic()
    await poll_until(
        lambda: pull.status().wire()["SourceIndex"] == 1 and pull.status().wire()["State"] == "up",
        4,
        "failover",
    )
    assert time.monotonic() - stalled_at >= 0.45
    assert "no media" in pull.status().wire()["LastError"]
    await finish(pull, task)


async def test_viewers_held_then_released_when_every_origin_stays_down(
    hub: Hub, sample_frames: list[Frame]
) -> None:
    origins = Origins(sample_frames, 2)
    pull = make_pull(hub, origins, fast_settings(start_timeout_s=1.5))
    task = asyncio.create_task(pull.run())
    await asyncio.wait_for(pull.first_media.wait(), 5)
    sub = await hub.play(KEY, protocol="test", timeout=1)
    viewer = Viewer(sub)
    await viewer.frames_after(10)
    origins[0].alive = origins[1].alive = False
    lost = time.monotonic()
    await asyncio.wait_for(viewer.eof.wait(), 5)
    held = time.monotonic() - lost
    assert 1.2 <= held <= 3.5, held  # held for start_timeout_s, then EOF
    await asyncio.wait_for(task, 2)
    assert pull.end_reason == "origins_unavailable"


async def test_update_urls_moves_the_pull_only_when_its_origin_is_removed(
    hub: Hub, sample_frames: list[Frame]
) -> None:
    origins = Origins(sample_frames, 3)
    pull = make_pull(hub, origins, fast_settings(failback=False))
    task = asyncio.create_task(pull.run())
    await asyncio.wait_for(pull.first_media.wait(), 5)
    sub = await hub.play(KEY, protocol="test", timeout=1)
    viewer = Viewer(sub)
    await viewer.frames_after(10)

    pull.update_urls([origins.urls[2], origins.urls[0]])  # in-use origin still listed: untouched
    await asyncio.sleep(0.3)
    assert origins[0].connects == 1 and pull.status().wire()["SourceIndex"] == 1
    assert pull.status().wire()["SourceUrl"] == origins.urls[0]

    pull.update_urls([origins.urls[1]])  # removed: switch now
    await poll_until(lambda: origins[1].streaming == 1 and pull.status().wire()["State"] == "up", 4, "switch")
    await poll_until(lambda: origins[0].streaming == 0, 2, "old origin released")
    await viewer.more_frames(30)
    assert not viewer.eof.is_set()
    viewer.assert_monotonic()
    await finish(pull, task)
    await viewer.close()


async def test_publisher_preempts_a_play_pull(hub: Hub, sample_frames: list[Frame]) -> None:
    origins = Origins(sample_frames, 1)
    pull = make_pull(hub, origins, fast_settings())
    task = asyncio.create_task(pull.run())
    await asyncio.wait_for(pull.first_media.wait(), 5)
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER, owner="obs")
    await asyncio.wait_for(task, 3)
    assert pull.end_reason == "preempted"
    assert origins[0].streaming == 0
    stream = hub.get(KEY)
    assert stream is not None and stream.source is pub  # the relay did not close the publisher's stream


async def test_simultaneous_viewers_share_one_pull_and_linger(hub: Hub, sample_frames: list[Frame]) -> None:
    origins = Origins(sample_frames, 1)
    relays = ondemand(hub, origins, fast_settings(linger_s=0.8))
    subs = await asyncio.gather(*(hub.play(KEY, protocol="t", query="tok=1", timeout=4) for _ in range(5)))
    assert all(s is not None for s in subs)
    assert origins[0].connects == 1
    assert origins[0].queries == ["tok=1"]
    assert len(relays.status()) == 1 and relays.status()[0].wire()["Viewers"] == 5
    for s in subs:
        s.close()
    await asyncio.sleep(0.3)
    assert relays.status()[0].wire()["State"] == "lingering"
    late = await hub.play(KEY, protocol="t", timeout=4)  # arrives during the linger: reuses the pull
    assert late is not None
    await asyncio.sleep(1.0)
    assert origins[0].connects == 1 and relays.status()[0].wire()["State"] == "up"
    late.close()
    await poll_until(lambda: not relays.pulls, 3, "pull stopped after the linger")
    assert origins[0].streaming == 0
    await relays.close()


async def test_trigger_without_config_or_with_dead_origins_fails_fast(
    hub: Hub, sample_frames: list[Frame]
) -> None:
    origins = Origins(sample_frames, 2)
    origins[0].alive = origins[1].alive = False
    relays = ondemand(hub, origins, fast_settings())
    started = time.monotonic()
    assert await hub.play(StreamKey("vh", "other", "s"), protocol="t", timeout=4) is None
    assert await hub.play(KEY, protocol="t", timeout=4) is None
    assert time.monotonic() - started < 2.5  # well below the 4 s play timeout
    assert not relays.pulls
    await relays.close()


async def test_config_change_and_delete_apply_to_running_pulls(hub: Hub, sample_frames: list[Frame]) -> None:
    origins = Origins(sample_frames, 2)
    relays = ondemand(hub, origins, fast_settings(failback=False))
    sub = await hub.play(KEY, protocol="t", timeout=4)
    viewer = Viewer(sub)
    await viewer.frames_after(10)
    assert origins[0].streaming == 1
    # Update: only origin 1 remains -> the pull moves there, the viewer stays.
    only_second = RelayV3Config(
        vhost="vh",
        app="live",
        groups=(RelayGroup("g", (RelayServer("rtmp", origins.urls[1].split("/")[2]),)),),
        created=0,
        updated=1,
    )
    relays.on_change(ChangeEvent("relay_v3", "updated", ("vh", "live"), only_second))
    await poll_until(lambda: origins[1].streaming == 1 and origins[0].streaming == 0, 4, "move")
    await viewer.more_frames(20)
    assert not viewer.eof.is_set()
    # Delete: the pull stops, the viewer gets EOF.
    relays.on_change(ChangeEvent("relay_v3", "deleted", ("vh", "live"), None))
    await asyncio.wait_for(viewer.eof.wait(), 3)
    await poll_until(lambda: not relays.pulls and origins[1].streaming == 0, 3, "stop")
    await relays.close()


async def test_webhooks_retry_and_never_block() -> None:
    received: list[dict[str, Any]] = []
    calls = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls <= 2:  # the receiver is flaky at first
            return web.Response(status=503)
        received.append(await request.json())
        return web.Response(status=200)

    async with webhook_receiver(hook) as url:
        sender = WebhookSender(WebhookSettings(url=url, timeout_s=1.0, retries=3))
        sender.start()
        try:
            events = RelayEvents(RelayMetrics(None), sender)
            events.emit("relay_started", kind="play", vhost="vh", app="live", stream="s", SourceIndex=0)
            events.emit("stopped", kind="play", vhost="vh", app="live", stream="s", Reason="x")
            await poll_until(lambda: len(received) == 2, 6, "webhook delivery")
            assert [e["Event"] for e in received] == ["relay_started", "stopped"]  # in order, after 2 retries
            assert received[0]["Vhost"] == "vh" and received[0]["SourceIndex"] == 0
            assert calls == 4 and sender.failed == 0
        finally:
            await sender.close()

    # A dead receiver: send() stays instant and memory stays bounded.
    dead = WebhookSender(WebhookSettings(url="http://127.0.0.1:9/hook", timeout_s=0.5, retries=1))
    dead.start()
    try:
        started = time.monotonic()
        for i in range(QUEUE_MAX + 500):
            dead.send({"Event": "x", "N": i})
        assert time.monotonic() - started < 0.5
        assert len(dead._queue) <= QUEUE_MAX and dead.dropped >= 500
    finally:
        await dead.close(drain_timeout_s=0.1)


async def test_a_denied_origin_is_skipped_without_connecting(hub: Hub, sample_frames: list[Frame]) -> None:
    origins = Origins(sample_frames, 1)
    metadata_url = "rtmp://169.254.169.254:1935/live/s"
    asked: list[str] = []

    def open_source(url: str) -> Any:
        asked.append(url)
        return origins.open_source(url)

    metrics = RelayMetrics(None)
    pull = RelayPull(
        key=KEY,
        kind="play",
        urls=[metadata_url, *origins.urls],
        publication_factory=lambda: hub.publish(KEY, kind=SourceKind.RELAY_PLAY, owner="t"),
        settings=fast_settings(),
        events=RelayEvents(metrics),
        open_source=open_source,
    )
    task = asyncio.create_task(pull.run())
    await asyncio.wait_for(pull.first_media.wait(), 5)
    assert asked == [origins.urls[0]]  # the metadata address was never opened
    row = pull.status().wire()
    assert row["SourceIndex"] == 1 and row["LastError"].startswith("policy")
    assert metrics.failures.labels("policy")._value.get() == 1
    await finish(pull, task)
