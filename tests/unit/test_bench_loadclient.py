"""The bench load client against a tiny real HTTP-FLV server on 127.0.0.1 (seconds, not minutes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from bench.loadclient import FlvViewer, ViewerPool, ViewerStats

from liverelay.media.codecs import make_frame
from liverelay.media.flv import flv_header, flv_tag
from liverelay.media.frame import Frame, FrameKind

FPS = 30
VIDEO_BYTES = 4000  # 30 fps * 4 kB: well past the counters' 32 KiB wake-up mark each second


def media_tags(seconds: float) -> list[tuple[int, bytes]]:
    """(timestamp ms, tag bytes): AVC + AAC headers, then 1 s GOPs of video and some audio."""
    tags = [
        (0, flv_tag(make_frame(FrameKind.VIDEO, 0, b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f"))),
        (0, flv_tag(make_frame(FrameKind.AUDIO, 0, b"\xaf\x00\x12\x10"))),
    ]
    for i in range(int(seconds * FPS)):
        ts = i * 1000 // FPS
        head = b"\x17\x01" if i % FPS == 0 else b"\x27\x01"
        tags.append((ts, flv_tag(make_frame(FrameKind.VIDEO, ts, head + bytes(VIDEO_BYTES)))))
        tags.append((ts, flv_tag(make_frame(FrameKind.AUDIO, ts, b"\xaf\x01" + bytes(200)))))
    return tags


@pytest.fixture
async def flv_server(unused_tcp_port: int) -> AsyncIterator[str]:
    """GET /live/s.flv streams 3 s of media in real time (chunked); anything else is 404."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.match_info["name"] != "s":
            raise web.HTTPNotFound()
        resp = web.StreamResponse(headers={"Content-Type": "video/x-flv"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(flv_header(True, True))
        t0 = time.monotonic()
        for ts, tag in media_tags(3.0):
            delay = t0 + ts / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await resp.write(tag)
        return resp

    app = web.Application()
    app.router.add_get("/live/{name}.flv", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", unused_tcp_port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{unused_tcp_port}/live"
    finally:
        await runner.cleanup()


async def test_pool_counts_and_parses_in_real_time(flv_server: str) -> None:
    pool = ViewerPool(f"{flv_server}/s.flv", 10, parse_every=5)
    try:
        await pool.start()
        await asyncio.sleep(0.5)
        pool.mark()
        await asyncio.sleep(2.0)
        summary = pool.summary(full_rate_bps=0.85 * FPS * VIDEO_BYTES)
    finally:
        await pool.close()
    assert summary["viewers"] == 10 and summary["parsed"] == 2
    assert summary["errors"] == 0, summary["error_examples"]
    assert summary["parsed_with_media"] == 2
    # Media arrives paced at wall time: the ratio is near 1, not the burst of a file read.
    assert 0.8 < summary["media_wall_min"] <= summary["media_wall_median"] < 1.2
    # Counters wake per 32 KiB, so allow one wake-up's worth below the true rate.
    assert summary["full_rate"] >= 8, summary
    parsed = [v for v in pool.viewers if v.parsed]
    for v in parsed:
        assert v.stats.ttff_s is not None and 0 <= v.stats.ttff_s < 1.0
        assert v.stats.frames > 100
        assert v.stats.max_gap_s < 0.5


async def test_viewer_records_http_error_and_close(flv_server: str) -> None:
    v = FlvViewer(0, f"{flv_server}/missing.flv", parsed=True)
    await v.connect()
    await asyncio.wait_for(v.closed.wait(), 5)
    assert v.stats.error == "http status 404"
    assert v.stats.first_video_key_at is None


async def test_viewer_records_refused_connect(unused_tcp_port: int) -> None:
    v = FlvViewer(0, f"http://127.0.0.1:{unused_tcp_port}/live/s.flv", parsed=False)
    await v.connect()
    assert v.closed.is_set()
    assert v.stats.error is not None and v.stats.error.startswith("connect:")


async def test_pool_reconnects_after_server_ends_stream(flv_server: str) -> None:
    pool = ViewerPool(
        f"{flv_server}/s.flv", 2, parse_every=1, reconnect=True, reconnect_delay_s=0.1, max_reconnects=1
    )
    try:
        await pool.start()
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not all(v.stats.reconnects for v in pool.viewers):
            await asyncio.sleep(0.1)
    finally:
        await pool.close()
    assert all(v.stats.reconnects == 1 for v in pool.viewers)


async def test_garbage_body_fails_one_viewer_only(unused_tcp_port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\r\nNOTFLV" + bytes(100))
        await writer.drain()
        await asyncio.sleep(2)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", unused_tcp_port)
    try:
        parsed = FlvViewer(0, f"http://127.0.0.1:{unused_tcp_port}/live/s.flv", parsed=True)
        counter = FlvViewer(1, f"http://127.0.0.1:{unused_tcp_port}/live/s.flv", parsed=False)
        await parsed.connect()
        await counter.connect()
        await asyncio.wait_for(parsed.closed.wait(), 5)
        assert parsed.stats.error is not None and parsed.stats.error.startswith("flv:")
        assert not counter.closed.is_set()
        counter.close()
    finally:
        server.close()
        await server.wait_closed()


def test_stats_gap_watch_and_media_wall_ratio() -> None:
    st = ViewerStats(0, "flv", True, started_at=100.0)
    key = make_frame(FrameKind.VIDEO, 0, b"\x17\x01" + bytes(10))
    inter = make_frame(FrameKind.VIDEO, 33, b"\x27\x01" + bytes(10))
    config = make_frame(FrameKind.VIDEO, 0, b"\x17\x00" + bytes(10))
    st.on_frame(config, 100.1, 0.5)
    assert st.first_video_key_at is None  # a sequence header is not the first keyframe
    st.on_frame(key, 100.2, 0.5)
    st.mark(100.2)
    st.on_frame(inter, 100.233, 0.5)
    st.watch_from = 100.5
    st.on_frame(Frame(FrameKind.VIDEO, 2033, inter.payload), 102.233, 0.5)  # a 2 s outage
    st.on_frame(Frame(FrameKind.VIDEO, 2066, inter.payload), 102.266, 0.5)
    assert st.ttff_s is not None and abs(st.ttff_s - 0.2) < 1e-9
    assert abs(st.max_gap_watched - 2.0) < 1e-9
    assert st.gap_ends == [(100.233, 102.233)]
    ratio = st.media_wall_ratio_since_mark(102.266)
    assert ratio is not None and abs(ratio - 2.066 / 2.066) < 0.01
