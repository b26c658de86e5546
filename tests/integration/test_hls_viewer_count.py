"""The HLS muxer is no viewer: only the HLS sessions count (a real in-process HTTP listener,
real ffmpeg feeding the hub, real HTTP requests for the playlists)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import generate_latest
from tests.integration.hls_helpers import classic_url, get, wait_master
from tests.integration.hubnode import DEFAULT_KEY, HubNode

from liverelay.config import Settings

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def hls_node() -> AsyncIterator[HubNode]:
    settings = Settings()
    settings.media.hls_session_timeout_s = 1.0  # the session ends soon ...
    settings.media.hls_linger_s = 60.0  # ... while the muxer keeps running
    node = await HubNode(settings).start()
    try:
        yield node
    finally:
        await node.close()


async def test_one_hls_viewer_counts_once_and_its_expiry_starts_the_linger(
    hls_node: HubNode, ffmpeg: str, sample_flv: Path
) -> None:
    node = hls_node
    await node.feed_ffmpeg(ffmpeg, sample_flv)
    stream = node.hub.get(DEFAULT_KEY)
    assert stream is not None
    counts: list[int] = []
    stream.add_viewer_listener(counts.append)  # what a V3 pull's linger listens to
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        media = await wait_master(client, classic_url(node.port, "live", "s"), timeout=15)
        status, body, _ = await get(client, media)
        assert status == 200, body
    # One session and one muxer: one viewer (the session), not two.
    assert stream.viewer_count == 1 and stream.stats()["viewers"] == 1
    assert {p: n for p, n in node.hub.viewers_by_protocol().items() if n} == {"hls": 1}
    text = generate_latest(node.metrics).decode()
    assert "liverelay_hls_muxers 1.0" in text and "liverelay_hls_sessions 1.0" in text, text
    assert 'liverelay_viewers{protocol="hls"} 1.0' in text and "hls-muxer" not in text, text
    # Nobody fetches: the session expires while the muxer runs, and the listeners hear 0.
    deadline = time.monotonic() + 15
    while (not counts or counts[-1] != 0) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert counts and counts[-1] == 0, counts
    assert stream.viewer_count == 0
    text = generate_latest(node.metrics).decode()
    assert "liverelay_hls_muxers 1.0" in text and "liverelay_hls_sessions 0.0" in text, text
