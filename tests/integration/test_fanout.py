"""Fan-out with real sockets: slow viewers stay bounded, many viewers all get full rate."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.integration.hubnode import DEFAULT_KEY, FlvViewer, HubNode

from liverelay.config import Settings
from liverelay.media.frame import FrameKind


@pytest.fixture
async def small_queue_node() -> AsyncIterator[HubNode]:
    settings = Settings()
    settings.media.viewer_queue_bytes = 128 * 1024
    settings.media.viewer_max_skips = 1
    node = await HubNode(settings).start()
    try:
        yield node
    finally:
        await node.close()


async def test_stalled_viewer_is_bounded_then_dropped_and_does_not_slow_others(
    small_queue_node: HubNode, ffmpeg: str, sample_flv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Less kernel buffering than in production so the hub queue is reached in seconds.
    monkeypatch.setattr("liverelay.servers.http.VIEWER_SEND_BUFFER", 32 * 1024)
    node = small_queue_node
    await node.feed_ffmpeg(ffmpeg, sample_flv)
    stream = node.hub.get(DEFAULT_KEY)
    assert stream is not None
    normal = await FlvViewer(node.port).connect()
    stalled = await FlvViewer(node.port).connect(rcvbuf=2048)
    try:
        assert await normal.read_headers() == 200
        normal.start()
        # The stalled viewer never reads a byte after the request: the kernel buffers
        # fill, then the hub queue fills, then it skips, then it is dropped.
        started = time.monotonic()
        max_queued = 0
        while time.monotonic() - started < 25:
            subs = [s for s in stream.subscribers if s is not None]
            max_queued = max([max_queued, *(s.queued_bytes for s in subs)])
            if node.hub.viewer_drops:
                break
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        print(f"stalled viewer dropped after {elapsed:.1f}s, max queue {max_queued} B")
        assert node.hub.viewer_drops == 1 and node.hub.viewer_skips >= 2
        assert max_queued <= 128 * 1024 + 64 * 1024  # bound + the one frame that crosses it
        assert stream.viewer_count == 1
        # The normal viewer kept real time all along.
        now = time.monotonic()
        window = min(elapsed, 8.0)
        advanced = normal.media_ms_between(now - window, now) / 1000
        assert advanced / window > 0.85, (advanced, window)
        assert not normal.eof
    finally:
        await normal.close()
        await stalled.close()


async def test_hundred_viewers_all_get_full_rate(ffmpeg: str, sample_flv: Path) -> None:
    node = await HubNode().start()
    viewers: list[FlvViewer] = []
    try:
        await node.feed_ffmpeg(ffmpeg, sample_flv)
        viewers = [FlvViewer(node.port) for _ in range(100)]
        await asyncio.gather(*(v.connect() for v in viewers))
        statuses = await asyncio.gather(*(v.read_headers() for v in viewers))
        assert statuses == [200] * 100
        for v in viewers:
            v.start()
        t0 = time.monotonic() + 1.0  # after the join bursts
        await asyncio.sleep(6.0)
        t1 = time.monotonic()
        rates = sorted(v.media_ms_between(t0, t1) / 1000 / (t1 - t0) for v in viewers)
        print(f"100 viewers: media/wall min {rates[0]:.3f} median {rates[50]:.3f} max {rates[-1]:.3f}")
        assert rates[0] > 0.9 and rates[-1] < 1.1
        for v in viewers:
            video = v.media(FrameKind.VIDEO)
            assert video[0].keyframe
            stamps = [f.timestamp for f in video]
            assert stamps == sorted(stamps)
        stream = node.hub.get(DEFAULT_KEY)
        assert stream is not None and stream.viewer_count == 100
        assert node.hub.viewer_skips == 0
    finally:
        for v in viewers:
            with contextlib.suppress(Exception):
                await v.close()
        await node.close()
