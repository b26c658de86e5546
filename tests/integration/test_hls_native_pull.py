"""sources.hls (the native HLS puller) against real loopback HTTP servers.

Segments are real MPEG-TS (the FLV fixture muxed by media.mpegts.TsMuxer, cut at its
keyframes); playlists are served by aiohttp handlers that can misbehave on purpose.
Every denial is checked at the server too: a denied host must never get a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.integration.test_sources_flv import Sink, serve

from liverelay.config import RelaySettings
from liverelay.media.elementary import VideoCodec
from liverelay.media.flv import FlvDecoder
from liverelay.media.frame import Frame, FrameKind
from liverelay.media.mpegts import TsDemuxer, TsMuxer
from liverelay.sources import open_source
from liverelay.sources.base import SourceError
from liverelay.sources.hls import PACE_TICK_S, pull

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "flv" / "tiny_h264_aac.flv"
KEY = bytes(range(16))
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _segments() -> list[bytes]:
    """The fixture as TS segments, one per GOP (each starts with PAT/PMT and a keyframe)."""
    frames = [e for e in FlvDecoder().feed(FIXTURE.read_bytes()) if isinstance(e, Frame)]
    mux = TsMuxer(video=VideoCodec.AVC, audio=True)
    segments: list[bytearray] = []
    for frame in frames:
        if (frame.kind == FrameKind.VIDEO and frame.keyframe and not frame.config) or not segments:
            segments.append(bytearray(mux.start_segment()))
        segments[-1] += mux.mux(frame)
    return [bytes(s) for s in segments]


SEGMENTS = _segments()
# Real captures for the fuzz: our muxer's segments and an ffmpeg-written HEVC + AAC segment.
CAPTURES = [*SEGMENTS, (FIXTURE.parent.parent / "hls" / "tiny_hevc_aac.ts").read_bytes()]


def playlist(names: list[str], *, first: int = 0, endlist: bool = True, head: str = "") -> str:
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:1", f"#EXT-X-MEDIA-SEQUENCE:{first}", head]
    for name in names:
        lines += ["#EXTINF:0.667,", name]
    if endlist:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def encrypt(data: bytes, iv: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(KEY), modes.CBC(iv)).encryptor()
    return enc.update(padder.update(data) + padder.finalize()) + enc.finalize()


def fast() -> RelaySettings:
    return RelaySettings(connect_timeout_s=1.0, no_media_timeout_s=2.0)


class Origin:
    """Routes: path -> body (bytes/str) or a status int; everything requested is logged."""

    def __init__(self, routes: dict[str, bytes | str | int]) -> None:
        self.routes = routes
        self.requests: list[str] = []

    async def handler(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path)
        body = self.routes.get(request.path, 404)
        if isinstance(body, int):
            if body in (301, 302, 307):
                raise web.HTTPFound(str(self.routes[request.path + "#location"]))
            return web.Response(status=body)
        return web.Response(body=body.encode() if isinstance(body, str) else body)


def vod(prefix: str = "/live/", *, endlist: bool = True) -> dict[str, bytes | str | int]:
    """The segments and their playlist (live, and never growing, without `endlist`)."""
    routes: dict[str, bytes | str | int] = {f"{prefix}s{i}.ts": seg for i, seg in enumerate(SEGMENTS)}
    routes[f"{prefix}index.m3u8"] = playlist([f"s{i}.ts" for i in range(len(SEGMENTS))], endlist=endlist)
    return routes


async def run_pull(url: str, settings: RelaySettings | None = None, timeout: float = 20) -> Sink:
    sink = Sink()
    await asyncio.wait_for(pull(url, sink, settings=settings or fast()), timeout)
    return sink


async def expect_error(url: str, reason: str, settings: RelaySettings | None = None) -> SourceError:
    with pytest.raises(SourceError) as info:
        await run_pull(url, settings)
    assert info.value.reason == reason, info.value
    return info.value


def video_timestamps(sink: Sink) -> list[int]:
    return [f.timestamp for f in sink.frames if f.kind == FrameKind.VIDEO and not f.config]


def assert_media(sink: Sink, video_frames: int) -> None:
    assert any(f.kind == FrameKind.VIDEO and f.config for f in sink.frames), "no AVC sequence header"
    assert any(f.kind == FrameKind.AUDIO and f.config for f in sink.frames), "no AAC sequence header"
    ts = video_timestamps(sink)
    assert len(ts) == video_frames
    assert ts == sorted(ts), "video timestamps go backwards"


def _expected_video() -> int:
    """Video frames the demuxer gets from the segments in one piece (the puller must match)."""
    demuxer = TsDemuxer()
    frames = demuxer.feed(b"".join(SEGMENTS)) + demuxer.flush()
    return sum(1 for f in frames if f.kind == FrameKind.VIDEO and not f.config)


EXPECTED_VIDEO = _expected_video()


async def test_dispatch_goes_to_the_native_puller() -> None:
    assert open_source("http://o.example/live/s.m3u8?token=x") is pull


async def test_a_vod_playlist_is_relayed_in_real_time_and_ends_cleanly() -> None:
    origin = Origin(vod())
    async with serve(origin.handler) as base:
        started = time.monotonic()
        sink = await run_pull(f"{base}/live/index.m3u8")
        took = time.monotonic() - started
    assert_media(sink, EXPECTED_VIDEO)
    span = video_timestamps(sink)[-1] - video_timestamps(sink)[0]
    # Paced like ffmpeg -re: the frames took about as long as they span (not a burst).
    assert took >= span / 1000 * 0.6, (took, span)
    assert origin.requests[0] == "/live/index.m3u8"


class RunSink(Sink):
    """Records when (loop time) each run of frames is handed over."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[tuple[float, int]] = []

    def on_frame(self, frame: Frame) -> None:
        raise AssertionError("the HLS puller hands its frames over in runs")

    def on_frames(self, frames: list[Frame]) -> None:
        self.runs.append((asyncio.get_running_loop().time(), len(frames)))
        super().on_frames(frames)


async def test_frames_go_over_in_runs_at_wake_ups_on_the_shared_pacing_grid() -> None:
    # Every pull of a node wakes on the same grid of PACE_TICK_S (loop time), so the HLS
    # relays of one node wake together; and what is due at a wake-up is one run.
    origin = Origin(vod())
    sink = RunSink()
    async with serve(origin.handler) as base:
        await asyncio.wait_for(pull(f"{base}/live/index.m3u8", sink, settings=fast()), 20)
    assert_media(sink, EXPECTED_VIDEO)
    assert len(sink.runs) >= 3, sink.runs
    assert sum(n for _, n in sink.runs) == len(sink.frames)
    assert max(n for _, n in sink.runs) > 1, "frames were handed over one by one"
    # A run that followed a wait starts on the grid (timer slack: a few ms late, never early).
    off_grid = []
    for at, _ in sink.runs[1:]:
        past = at % PACE_TICK_S
        if 0.030 < past < PACE_TICK_S - 0.001:
            off_grid.append(round(past, 4))
    # Runs right after a segment download (not after a pacing wait) may fall anywhere;
    # most runs follow a pacing wait.
    assert len(off_grid) <= len(sink.runs) // 2, (off_grid, sink.runs)


async def test_a_master_playlist_plays_its_highest_bandwidth_variant() -> None:
    routes = vod("/hi/")
    routes["/live/master.m3u8"] = (
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=500000\n/lo/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=2000000\n/hi/index.m3u8\n"
    )
    origin = Origin(routes)
    async with serve(origin.handler) as base:
        sink = await run_pull(f"{base}/live/master.m3u8")
    assert_media(sink, EXPECTED_VIDEO)
    assert not [p for p in origin.requests if p.startswith("/lo/")], origin.requests


async def test_aes_128_segments_are_decrypted() -> None:
    routes: dict[str, bytes | str | int] = {"/keys/k": KEY}
    for i, seg in enumerate(SEGMENTS):
        routes[f"/live/s{i}.ts"] = encrypt(seg, i.to_bytes(16, "big"))  # IV = media sequence number
    routes["/live/index.m3u8"] = playlist(
        [f"s{i}.ts" for i in range(len(SEGMENTS))], head='#EXT-X-KEY:METHOD=AES-128,URI="/keys/k"'
    )
    origin = Origin(routes)
    async with serve(origin.handler) as base:
        sink = await run_pull(f"{base}/live/index.m3u8")
    assert_media(sink, EXPECTED_VIDEO)
    assert origin.requests.count("/keys/k") == 1  # fetched once, kept for the other segments


async def test_a_wrong_key_ends_the_source_with_a_clear_error() -> None:
    routes = vod()
    routes["/keys/k"] = bytes(16)
    routes["/live/index.m3u8"] = playlist(["s0.ts"], head='#EXT-X-KEY:METHOD=AES-128,URI="/keys/k"')
    async with serve(Origin(routes).handler) as base:
        error = await expect_error(f"{base}/live/index.m3u8", "protocol")
    assert "decrypt" in error.message or "MPEG-TS" in error.message, error


async def test_a_404_segment_is_skipped_counted_and_the_timeline_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    routes = vod()
    del routes["/live/s1.ts"]
    caplog.set_level(logging.INFO, logger="liverelay.sources.hls")
    async with serve(Origin(routes).handler) as base:
        sink = await run_pull(f"{base}/live/index.m3u8")
    skipped = [r for r in caplog.records if "answered 404, skipped" in r.getMessage()]
    assert len(skipped) == 1
    ts = video_timestamps(sink)
    assert ts == sorted(ts) and 0 < len(ts) < EXPECTED_VIDEO


async def test_segments_failing_in_a_row_end_the_source() -> None:
    routes = vod()
    for i in range(len(SEGMENTS)):
        routes[f"/live/s{i}.ts"] = 503
    async with serve(Origin(routes).handler) as base:
        error = await expect_error(f"{base}/live/index.m3u8", "http_status")
    assert "in a row" in error.message


async def test_a_stalled_live_playlist_fails_as_timeout_within_the_no_media_timeout() -> None:
    routes = vod(endlist=False)
    settings = fast()
    async with serve(Origin(routes).handler) as base:
        started = time.monotonic()
        error = await expect_error(f"{base}/live/index.m3u8", "timeout", settings)
        took = time.monotonic() - started
    assert "stalled" in error.message
    # The playlist (1 s target) stopped growing at its first load: failed after no_media_timeout_s,
    # plus at most one reload interval.
    assert settings.no_media_timeout_s <= took <= settings.no_media_timeout_s + 3.0, took


async def test_a_redirect_to_a_denied_address_is_refused_before_any_request() -> None:
    routes: dict[str, bytes | str | int] = {
        "/live/index.m3u8": 302,
        "/live/index.m3u8#location": "http://169.254.169.254/latest/index.m3u8",
    }
    async with serve(Origin(routes).handler) as base:
        error = await expect_error(f"{base}/live/index.m3u8", "policy")
    assert "redirects to" in error.message and "169.254.169.254" in error.message


@pytest.mark.parametrize("where", ["segment", "key", "variant"])
async def test_urls_on_a_denied_host_are_refused_and_never_requested(where: str) -> None:
    denied = Origin(vod())
    async with serve(denied.handler) as denied_base:
        port = denied_base.rsplit(":", 1)[1]
        elsewhere = f"http://127.0.0.2:{port}"  # the same server, reached at a denied address
        routes = vod()
        if where == "segment":
            routes["/live/index.m3u8"] = playlist([f"{elsewhere}/live/s0.ts"])
        elif where == "key":
            routes["/live/index.m3u8"] = playlist(
                ["s0.ts"], head=f'#EXT-X-KEY:METHOD=AES-128,URI="{elsewhere}/keys/k"'
            )
        else:
            routes["/live/index.m3u8"] = (
                f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n{elsewhere}/live/index.m3u8\n"
            )
        settings = RelaySettings(connect_timeout_s=1.0, no_media_timeout_s=2.0, deny_cidrs=["127.0.0.2/32"])
        async with serve(Origin(routes).handler) as base:
            error = await expect_error(f"{base}/live/index.m3u8", "policy", settings)
    assert "127.0.0.2" in error.message
    assert denied.requests == []


async def test_non_http_uris_in_a_playlist_are_refused() -> None:
    routes = vod()
    routes["/live/index.m3u8"] = playlist(["file:///etc/passwd"])
    async with serve(Origin(routes).handler) as base:
        error = await expect_error(f"{base}/live/index.m3u8", "protocol")
    assert "http(s)" in error.message


async def test_oversized_playlists_and_segments_end_the_source() -> None:
    routes = vod()
    settings = RelaySettings(
        connect_timeout_s=1.0, no_media_timeout_s=2.0, hls_max_segment_bytes=4096, hls_max_playlist_bytes=100
    )
    async with serve(Origin(routes).handler) as base:
        error = await expect_error(f"{base}/live/index.m3u8", "protocol", settings)
        assert "over 100 bytes" in error.message
        settings = settings.model_copy(update={"hls_max_playlist_bytes": 1 << 20})
        error = await expect_error(f"{base}/live/index.m3u8", "protocol", settings)
        assert "over 4096 bytes" in error.message


async def test_connection_refused_is_a_connect_error() -> None:
    async with serve(Origin({}).handler) as base:
        pass  # closed: nothing listens on that port any more
    error = await expect_error(f"{base}/live/index.m3u8", "connect")
    assert "cannot connect" in error.message


async def test_a_missing_playlist_is_an_http_status_error() -> None:
    async with serve(Origin({}).handler) as base:
        error = await expect_error(f"{base}/live/index.m3u8", "http_status")
    assert "HTTP 404" in error.message


async def test_cancel_ends_the_pull_at_once() -> None:
    routes = vod(endlist=False)
    sink = Sink()
    async with serve(Origin(routes).handler) as base:
        task = asyncio.create_task(pull(f"{base}/live/index.m3u8", sink, settings=fast()))
        deadline = time.monotonic() + 10
        while not sink.frames:
            assert time.monotonic() < deadline and not task.done(), "no frame"
            await asyncio.sleep(0.02)
        task.cancel()
        started = time.monotonic()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        assert time.monotonic() - started < 2.0


# ---- fuzz: hostile segments and playlists end that source with a clear error -------------


class Mutable:
    """One server whose segment and playlist bodies each example replaces."""

    def __init__(self) -> None:
        self.segment = b""
        self.playlist = ""

    async def handler(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith(".m3u8"):
            return web.Response(text=self.playlist)
        return web.Response(body=self.segment)


def mutate(data: bytes, draw: st.DataObject) -> bytes:
    raw = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 16))):
        pos = draw.draw(st.integers(0, len(raw) - 1))
        raw[pos] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(0, len(raw)))
    return bytes(raw[:cut])


@pytest.fixture
def mutable_origin() -> Mutable:
    return Mutable()


@given(data=st.data())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzz_bad_segments_and_playlists_end_the_source_only(
    mutable_origin: Mutable, data: st.DataObject
) -> None:
    origin = mutable_origin
    kind = data.draw(st.sampled_from(["segment", "playlist", "both"]))
    origin.segment = SEGMENTS[0]
    origin.playlist = playlist(["s0.ts"])
    if kind in ("segment", "both"):
        origin.segment = (
            mutate(data.draw(st.sampled_from(CAPTURES)), data)
            if data.draw(st.booleans())
            else data.draw(st.binary(max_size=3000))
        )
    if kind in ("playlist", "both"):
        origin.playlist = mutate(origin.playlist.encode(), data).decode("utf-8", errors="replace")

    async def one() -> None:
        async with serve(origin.handler) as base:
            try:
                await run_pull(f"{base}/live/index.m3u8", timeout=15)
            except SourceError as exc:
                assert exc.reason in ("protocol", "http_status", "timeout", "policy", "eof"), exc
                assert exc.message

    asyncio.run(one())


async def test_failing_reloads_are_spaced_and_end_as_a_stall() -> None:
    requests: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        requests.append(request.path)
        if request.path.endswith(".m3u8"):
            if len(requests) > 1:
                return web.Response(status=503)
            return web.Response(text=playlist(["s0.ts"], endlist=False))
        return web.Response(body=SEGMENTS[0])

    async with serve(handler) as base:
        error = await expect_error(f"{base}/live/index.m3u8", "timeout")
    assert "stalled" in error.message and "503" in error.message
    reloads = [p for p in requests if p.endswith(".m3u8")]
    # no_media_timeout_s = 2 with a 1 s target: retries every 0.5 s, not a busy loop.
    assert 2 <= len(reloads) <= 10, len(reloads)


async def test_far_behind_a_live_playlist_skips_to_its_edge(caplog: pytest.LogCaptureFixture) -> None:
    loads: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path.endswith(".m3u8"):
            loads.append(1)
            count = 4 if len(loads) == 1 else 24  # the second load lists 20 new segments at once
            return web.Response(text=playlist([f"x{i}.ts" for i in range(count)], endlist=False))
        msn = int(request.path.rsplit("x", 1)[1].split(".")[0])
        return web.Response(body=SEGMENTS[msn % len(SEGMENTS)])

    caplog.set_level(logging.INFO, logger="liverelay.sources.hls")
    sink = Sink()
    async with serve(handler) as base:
        task = asyncio.create_task(pull(f"{base}/live/index.m3u8", sink, settings=fast()))
        deadline = time.monotonic() + 15
        while not any("skipped ahead" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline and not task.done(), "never skipped ahead"
            await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, SourceError):
            await asyncio.wait_for(task, 5)
    ts = video_timestamps(sink)
    assert ts == sorted(ts)


async def test_fmp4_segments_written_by_ffmpeg(ffmpeg: str, sample_flv: Path, tmp_path: Path) -> None:
    out = tmp_path / "fmp4"
    out.mkdir()
    hls = ["-f", "hls", "-hls_segment_type", "fmp4", "-hls_time", "1", "-hls_playlist_type", "vod"]
    command = [ffmpeg, "-v", "error", "-i", str(sample_flv), "-t", "3", "-c", "copy", *hls]
    subprocess.run([*command, str(out / "index.m3u8")], check=True, timeout=60)
    assert "#EXT-X-MAP" in (out / "index.m3u8").read_text()

    async def handler(request: web.Request) -> web.StreamResponse:
        path = out / request.path.rsplit("/", 1)[1]
        return web.FileResponse(path) if path.is_file() else web.Response(status=404)

    async with serve(handler) as base:
        sink = await run_pull(f"{base}/live/index.m3u8")
    assert any(f.kind == FrameKind.VIDEO and f.config for f in sink.frames), "no AVC sequence header"
    assert any(f.kind == FrameKind.AUDIO and f.config for f in sink.frames), "no AAC sequence header"
    ts = video_timestamps(sink)
    assert ts == sorted(ts) and len(ts) >= 60, len(ts)  # 3 s at 30 fps, within a GOP


async def test_a_byte_identical_reload_is_not_parsed_again(caplog: pytest.LogCaptureFixture) -> None:
    routes = vod(endlist=False)  # live, never growing: every reload returns the same bytes
    caplog.set_level(logging.DEBUG, logger="liverelay.sources.hls")
    async with serve(Origin(routes).handler) as base:
        await expect_error(f"{base}/live/index.m3u8", "timeout")
    (ended,) = [r.getMessage() for r in caplog.records if " ended: " in r.getMessage()]
    counts = re.search(r"(\d+) playlist loads, (\d+) parsed", ended)
    assert counts is not None, ended
    loads, parsed = int(counts[1]), int(counts[2])
    assert loads >= 3 and parsed == 1, ended


def _chunked_origin(served: list[int]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Segments sent without a Content-Length (chunked transfer encoding), in small writes."""
    routes = vod()

    async def handler(request: web.Request) -> web.StreamResponse:
        body = routes.get(request.path, 404)
        if isinstance(body, int):
            return web.Response(status=body)
        data = body.encode() if isinstance(body, str) else body
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(0, len(data), 5000):
            await response.write(data[i : i + 5000])
        served.append(len(data))
        await response.write_eof()
        return response

    return handler


async def test_bodies_without_a_content_length_are_read_and_bounded() -> None:
    served: list[int] = []
    async with serve(_chunked_origin(served)) as base:
        sink = await run_pull(f"{base}/live/index.m3u8")
        assert_media(sink, EXPECTED_VIDEO)
        small = fast().model_copy(update={"hls_max_segment_bytes": 4096})
        error = await expect_error(f"{base}/live/index.m3u8", "protocol", small)
    assert "over 4096 bytes" in error.message
    assert served  # the chunked handler answered
