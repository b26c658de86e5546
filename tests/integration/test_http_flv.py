"""HTTP-FLV listener with real sockets: ffmpeg -> pipe -> hub -> HTTP -> ffprobe / raw viewers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from tests.integration.hubnode import DEFAULT_KEY, FlvViewer, HubNode, ffprobe_frames

from liverelay.config import Settings
from liverelay.hub import SourceKind, StreamKey
from liverelay.media.frame import FrameKind
from liverelay.servers.http import DEPS_KEY, create_http_app


@pytest.fixture
async def hubnode() -> AsyncIterator[HubNode]:
    node = await HubNode().start()
    try:
        yield node
    finally:
        await node.close()


async def test_the_app_holds_the_listener_deps_it_was_given(hubnode: HubNode) -> None:
    app = create_http_app(hubnode.deps)
    assert app[DEPS_KEY] is hubnode.deps


async def test_ffprobe_decodes_video_and_audio_at_full_rate(
    hubnode: HubNode, ffmpeg: str, ffprobe: str, sample_flv: Path
) -> None:
    await hubnode.feed_ffmpeg(ffmpeg, sample_flv)
    started = time.monotonic()
    frames = await ffprobe_frames(ffprobe, hubnode.url(), 4)
    wall = time.monotonic() - started
    video, audio = frames["video"], frames["audio"]
    # 4 s of 30 fps video and 44.1 kHz AAC (1024 samples a frame = 43 frames/s).
    assert 108 <= len(video) <= 135, len(video)
    assert 150 <= len(audio) <= 195, len(audio)
    assert video[0]["key_frame"] == 1
    # Live: the stream started when we joined, so 4 s of media take about 4 s.
    assert 3.0 <= wall <= 8.0, wall


async def test_mid_stream_joiner_starts_at_a_keyframe_at_once(
    hubnode: HubNode, ffmpeg: str, sample_flv: Path
) -> None:
    await hubnode.feed_ffmpeg(ffmpeg, sample_flv)
    await asyncio.sleep(1.0)  # mid-GOP (2 s GOPs)
    viewer = await FlvViewer(hubnode.port).connect()
    try:
        assert await viewer.read_headers() == 200
        viewer.start()
        deadline = time.monotonic() + 5
        while not viewer.media(FrameKind.VIDEO) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        first_video = viewer.media(FrameKind.VIDEO)[0]
        first_at = next(t for t, f in viewer.frames if f is first_video)
        ttff_ms = (first_at - viewer.connected_at) * 1000
        print(f"time to first video keyframe: {ttff_ms:.1f} ms")
        assert first_video.keyframe
        assert ttff_ms < 1000  # GOP cache: no waiting for the next keyframe (2 s away)
        kinds = [(f.kind, f.config) for _, f in viewer.frames[:3]]
        assert kinds == [(FrameKind.DATA, False), (FrameKind.VIDEO, True), (FrameKind.AUDIO, True)]
        # The burst holds the GOP so far (~1 s of media), delivered at once.
        burst = [f for t, f in viewer.frames if t - first_at < 0.05 and f.kind == FrameKind.VIDEO]
        assert len(burst) >= 20
    finally:
        await viewer.close()
    # A real decoder joining mid-GOP decodes cleanly from its first frame (-xerror: any error fails).
    proc = await asyncio.create_subprocess_exec(
        ffmpeg, "-hide_banner", "-v", "error", "-xerror", "-i", hubnode.url(), "-t", "2", "-f", "null", "-",
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0 and not err.strip(), err.decode(errors="replace")


async def test_missing_stream_is_404_quickly(hubnode: HubNode) -> None:
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        async with session.get(hubnode.url("live", "nope")) as resp:
            assert resp.status == 404
            assert "not found" in await resp.text()
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert time.monotonic() - started < 0.5


async def test_cors_headers_and_preflight(hubnode: HubNode, ffmpeg: str, sample_flv: Path) -> None:
    await hubnode.feed_ffmpeg(ffmpeg, sample_flv)
    async with aiohttp.ClientSession() as session:
        async with session.options(
            hubnode.url(),
            headers={"Origin": "https://player.example", "Access-Control-Request-Method": "GET",
                     "Access-Control-Request-Headers": "range"},
        ) as resp:  # fmt: skip
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            assert "GET" in resp.headers["Access-Control-Allow-Methods"]
            assert resp.headers["Access-Control-Allow-Headers"] == "range"
        async with session.head(hubnode.url()) as resp:  # no body, not a viewer
            assert resp.status == 200 and resp.headers["Content-Type"] == "video/x-flv"
        async with session.head(hubnode.url("live", "nope")) as resp:
            assert resp.status == 404
        stream = hubnode.hub.get(DEFAULT_KEY)
        assert stream is not None and stream.viewer_count == 0
        async with session.get(hubnode.url(), headers={"Origin": "https://player.example"}) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            assert resp.headers["Content-Type"] == "video/x-flv"
            assert "Content-Length" not in resp.headers
            assert resp.headers.get("Transfer-Encoding") == "chunked"
            head = await resp.content.readexactly(13)
            assert head[:3] == b"FLV" and head[4] == 0x05  # audio + video flags


async def test_metrics_and_healthz(hubnode: HubNode, ffmpeg: str, sample_flv: Path) -> None:
    await hubnode.feed_ffmpeg(ffmpeg, sample_flv)
    viewer = await FlvViewer(hubnode.port).connect()
    try:
        assert await viewer.read_headers() == 200
        viewer.start()
        await asyncio.sleep(0.5)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{hubnode.port}/healthz") as resp:
                assert resp.status == 200 and (await resp.text()).strip() == "ok"
            async with session.get(f"http://127.0.0.1:{hubnode.port}/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
        assert "liverelay_streams 1.0" in text
        assert 'liverelay_viewers{protocol="http-flv"} 1.0' in text
        samples = [line.split() for line in text.splitlines() if line.startswith("liverelay_")]
        values = {name: float(value) for name, value in samples}
        assert values["liverelay_bytes_in_total"] > 10_000
        assert values["liverelay_bytes_out_total"] > 10_000
        assert values["liverelay_bytes_out_total"] <= viewer.bytes
    finally:
        await viewer.close()


class _Domains:
    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    def vhost_for(self, host: str) -> str | None:
        return self.table.get(host)


async def test_vhost_from_host_header_and_strict_mode(ffmpeg: str, sample_flv: Path) -> None:
    settings = Settings()
    settings.media.default_vhost = ""  # strict: unknown domains are refused
    node = await HubNode(settings, domains=_Domains({"play.example.com": "vh1"})).start()
    try:
        await node.feed_ffmpeg(ffmpeg, sample_flv, StreamKey("vh1", "live", "s"))
        known = await FlvViewer(node.port, host="Play.Example.com:8080").connect()
        unknown = await FlvViewer(node.port, host="other.example.com").connect()
        try:
            assert await known.read_headers() == 200
            assert await unknown.read_headers() == 404
        finally:
            await known.close()
            await unknown.close()
    finally:
        await node.close()


async def test_viewer_gets_eof_when_the_source_ends(
    hubnode: HubNode, ffmpeg: str, sample_flv: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="liverelay.http")
    pub = await hubnode.feed_ffmpeg(ffmpeg, sample_flv)
    viewer = await FlvViewer(hubnode.port).connect()
    try:
        assert await viewer.read_headers() == 200
        viewer.start()
        await asyncio.sleep(0.3)
        pub.close("publisher left")
        deadline = time.monotonic() + 5
        while not viewer.eof and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert viewer.eof and viewer.media(FrameKind.VIDEO)
        await asyncio.sleep(0.05)
        ends = [r.getMessage() for r in caplog.records if "ended" in r.getMessage()]
        assert len(ends) == 1 and str(DEFAULT_KEY) in ends[0] and "(eof)" in ends[0]
        assert hubnode.hub.get(DEFAULT_KEY) is None
    finally:
        await viewer.close()


async def test_client_disconnect_frees_the_viewer(hubnode: HubNode, ffmpeg: str, sample_flv: Path) -> None:
    await hubnode.feed_ffmpeg(ffmpeg, sample_flv)
    stream = hubnode.hub.get(DEFAULT_KEY)
    assert stream is not None
    counts: list[int] = []
    stream.add_viewer_listener(counts.append)
    viewer = await FlvViewer(hubnode.port).connect()
    assert await viewer.read_headers() == 200
    viewer.start()
    await asyncio.sleep(0.3)
    await viewer.close()
    deadline = time.monotonic() + 3
    while stream.viewer_count and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert counts == [1, 0]


async def test_play_trigger_starts_a_source_for_an_http_viewer(
    hubnode: HubNode, ffmpeg: str, sample_flv: Path
) -> None:
    queries: list[str] = []

    async def trigger(key: StreamKey, query: str) -> bool:
        queries.append(query)
        if key.name != "ondemand":
            return False
        await hubnode.feed_ffmpeg(ffmpeg, sample_flv, key)
        return True

    hubnode.hub.play_trigger = trigger
    hubnode.settings.relay.start_timeout_s = 5
    viewer = await FlvViewer(hubnode.port, "/live/ondemand.flv?token=a%2Fb&x=1").connect()
    try:
        assert await viewer.read_headers() == 200
        viewer.start()
        deadline = time.monotonic() + 5
        while not viewer.media(FrameKind.VIDEO) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert viewer.media(FrameKind.VIDEO)[0].keyframe
    finally:
        await viewer.close()
    started = time.monotonic()
    refused = await FlvViewer(hubnode.port, "/live/other.flv").connect()
    try:
        assert await refused.read_headers() == 404
    finally:
        await refused.close()
    assert time.monotonic() - started < 1
    assert queries == ["token=a%2Fb&x=1", ""]
    assert hubnode.hub.get(StreamKey("__defaultVhost__", "live", "ondemand")) is not None
    assert hubnode.hub.get(StreamKey("__defaultVhost__", "live", "other")) is None


async def test_viewers_stay_connected_across_an_origin_switch(
    hubnode: HubNode, ffmpeg: str, ffprobe: str, sample_flv: Path, tmp_path: Path
) -> None:
    # Origin B: another resolution, frame rate and GOP, so the codec headers change too.
    other = tmp_path / "other.flv"
    proc = await asyncio.create_subprocess_exec(
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=880:sample_rate=48000",
        "-t", "6", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-bf", "0", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "64k", "-f", "flv", str(other),
    )  # fmt: skip
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    pub = hubnode.hub.publish(DEFAULT_KEY, kind=SourceKind.RELAY_PLAY, owner="relay")
    await hubnode.feed_ffmpeg(ffmpeg, sample_flv, publication=pub, close_at_end=False)
    viewer = await FlvViewer(hubnode.port).connect()
    assert await viewer.read_headers() == 200
    viewer.start()
    probe = asyncio.create_task(ffprobe_frames(ffprobe, hubnode.url(), 4.5))
    try:
        await asyncio.sleep(1.5)
        await hubnode.stop_feeds()  # origin A dies ...
        switched_at = time.monotonic()
        pub.discontinuity()  # ... and the relay moves to origin B
        await hubnode.feed_ffmpeg(ffmpeg, other, publication=pub, close_at_end=False)
        decoded = await probe
        await asyncio.sleep(0.5)
    finally:
        probe.cancel()
        await viewer.close()
    assert not viewer.eof
    video = [f for f in viewer.media(FrameKind.VIDEO, coded=False) if f.kind == FrameKind.VIDEO]
    check = [f.timestamp for f in video]
    assert check == sorted(check)
    audio = [f.timestamp for f in viewer.media(FrameKind.AUDIO, coded=False)]
    assert audio == sorted(audio)
    headers = [f for f in video if f.config]
    assert len(headers) == 2 and headers[0].payload != headers[1].payload
    after = video[video.index(headers[1]) + 1]
    before = video[video.index(headers[1]) - 1]
    assert after.keyframe and 0 < after.timestamp - before.timestamp <= 200  # no hole, no overlap
    late = next(t for t, f in viewer.frames if f is after)
    print(f"switch: first frame of origin B {1000 * (late - switched_at):.0f} ms after the discontinuity")
    # ffprobe decoded straight through the switch: both resolutions, no gap in frames.
    sizes = [(f["width"], f["height"]) for f in decoded["video"]]
    assert sizes[0] == (640, 360) and sizes[-1] == (320, 240)
    assert len(decoded["video"]) >= 4.5 * 25 * 0.9
