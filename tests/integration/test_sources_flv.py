"""sources.flv.pull against real HTTP servers: our own listener and plain aiohttp servers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from tests.integration.hubnode import DEFAULT_KEY, HubNode

from liverelay.config import RelaySettings
from liverelay.media.flv import FlvDecoder, flv_header
from liverelay.media.frame import Frame, FrameKind
from liverelay.sources import open_source
from liverelay.sources.base import SourceError
from liverelay.sources.flv import pull

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "flv" / "tiny_h264_aac.flv"


class Sink:
    def __init__(self) -> None:
        self.frames: list[Frame] = []

    def on_frame(self, frame: Frame) -> None:
        self.frames.append(frame)

    def on_frames(self, frames: list[Frame]) -> None:
        self.frames.extend(frames)


def fast_settings() -> RelaySettings:
    return RelaySettings(connect_timeout_s=0.5, no_media_timeout_s=1.0)


@contextlib.asynccontextmanager
async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[str]:
    """A plain aiohttp server on 127.0.0.1 answering every path with `handler`."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_open_source_picks_this_module() -> None:
    assert open_source("http://origin.example/live/s.flv?x=1") is pull
    assert open_source("https://origin.example/live/s") is pull


async def test_pulls_a_file_served_in_small_chunks_and_returns_at_its_end() -> None:
    data = FIXTURE.read_bytes()
    seen_query: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen_query.append(request.rel_url.raw_query_string)
        resp = web.StreamResponse(headers={"Content-Type": "video/x-flv"})
        await resp.prepare(request)
        for i in range(0, len(data), 1000):
            await resp.write(data[i : i + 1000])
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    async with serve(handler) as base:
        sink = Sink()
        query = "auth_key=1700000000-0-0-a%2Fb%3D&vhost=%E4%B8%AD&x=1"
        await asyncio.wait_for(pull(f"{base}/live/s.flv?{query}", sink, settings=fast_settings()), 10)
    expected = [e for e in FlvDecoder().feed(data) if isinstance(e, Frame)]
    assert [(f.kind, f.timestamp, f.payload) for f in sink.frames] == [
        (f.kind, f.timestamp, f.payload) for f in expected
    ]
    assert seen_query == [query]  # sent exactly as given (signatures survive)


async def test_pulls_from_the_node_http_listener_and_cancel_closes_at_once(
    ffmpeg: str, sample_flv: Path
) -> None:
    node = await HubNode().start()
    try:
        await node.feed_ffmpeg(ffmpeg, sample_flv)
        stream = node.hub.get(DEFAULT_KEY)
        assert stream is not None
        sink = Sink()
        task = asyncio.create_task(pull(node.url(), sink, settings=fast_settings()))
        await asyncio.sleep(1.5)
        assert stream.viewer_count == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 2
        while stream.viewer_count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert stream.viewer_count == 0  # the socket was closed by the cancellation
        kinds = [(f.kind, f.config) for f in sink.frames[:3]]
        assert kinds == [(FrameKind.DATA, False), (FrameKind.VIDEO, True), (FrameKind.AUDIO, True)]
        video = [f for f in sink.frames if f.kind == FrameKind.VIDEO and not f.config]
        assert video[0].keyframe and 35 <= len(video) <= 55  # ~1.5 s of 30 fps
    finally:
        await node.close()


async def test_http_error_status() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/moved"):
            raise web.HTTPFound("http://169.254.169.254/latest.flv")
        return web.Response(status=403, text="forbidden")

    async with serve(handler) as base:
        with pytest.raises(SourceError) as info:
            await pull(f"{base}/live/s.flv", Sink(), settings=fast_settings())
        assert info.value.reason == "http_status" and "403" in info.value.message
        with pytest.raises(SourceError) as info:
            await pull(f"{base}/moved/s.flv", Sink(), settings=fast_settings())
        assert info.value.reason == "http_status" and "not followed" in info.value.message


async def test_connection_refused() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: refused
        with pytest.raises(SourceError) as info:
            await pull(f"http://127.0.0.1:{port}/live/s.flv", Sink(), settings=fast_settings())
    assert info.value.reason == "connect"


async def test_server_that_never_answers_times_out_within_connect_timeout() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(SourceError) as info:
            await pull(f"http://127.0.0.1:{port}/live/s.flv", Sink(), settings=fast_settings())
        assert info.value.reason == "timeout"
        assert 0.4 <= time.monotonic() - started < 1.5
    finally:
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()


async def test_stalled_body_times_out_as_no_media() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "video/x-flv"})
        await resp.prepare(request)
        await resp.write(flv_header())
        await asyncio.sleep(10)
        return resp

    async with serve(handler) as base:
        started = time.monotonic()
        with pytest.raises(SourceError) as info:
            await pull(f"{base}/live/s.flv", Sink(), settings=fast_settings())
        assert info.value.reason == "timeout" and "no media" in info.value.message
        assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>not flv</html>", "protocol"),
        (b"", "protocol"),
        (flv_header() + b"\xc8" + b"\x00" * 20, "protocol"),  # reserved tag type bits
        (flv_header() + b"\x09\x00\x10\x00" + b"\x00" * 20, "eof"),  # ends inside a tag
    ],
)
async def test_bad_or_truncated_bytes(body: bytes, reason: str) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="video/x-flv")

    async with serve(handler) as base:
        with pytest.raises(SourceError) as info:
            await pull(f"{base}/live/s.flv", Sink(), settings=fast_settings())
    assert info.value.reason == reason


async def test_connection_cut_mid_stream_is_eof() -> None:
    data = FIXTURE.read_bytes()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "video/x-flv"})
        await resp.prepare(request)  # chunked: a cut is visible as a missing last chunk
        await resp.write(data[:5000])
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return resp

    async with serve(handler) as base:
        sink = Sink()
        with pytest.raises(SourceError) as info:
            await pull(f"{base}/live/s.flv", sink, settings=fast_settings())
    assert info.value.reason == "eof"
    assert sink.frames  # what arrived before the cut was delivered


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl CLI)."""
    import shutil
    import subprocess

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed")
    out = tmp_path_factory.mktemp("tls")
    cert, key = out / "cert.pem", out / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@contextlib.asynccontextmanager
async def serve_tls(cert: Path, key: Path, body: bytes) -> AsyncIterator[str]:
    import ssl

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="video/x-flv")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_https_origin_with_a_trusted_certificate(
    tls_cert: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssl

    import aiohttp.connector

    cert, key = tls_cert
    trusting = ssl.create_default_context(cafile=str(cert))  # as if the origin's CA were installed
    monkeypatch.setattr(aiohttp.connector, "_SSL_CONTEXT_VERIFIED", trusting)
    data = FIXTURE.read_bytes()
    async with serve_tls(cert, key, data) as base:
        sink = Sink()
        await asyncio.wait_for(pull(f"{base}/live/s.flv?k=v", sink, settings=fast_settings()), 10)
    assert len(sink.frames) == len([e for e in FlvDecoder().feed(data) if isinstance(e, Frame)])


async def test_https_origin_with_an_untrusted_certificate_is_refused(tls_cert: tuple[Path, Path]) -> None:
    cert, key = tls_cert
    async with serve_tls(cert, key, FIXTURE.read_bytes()) as base:
        sink = Sink()
        with pytest.raises(SourceError) as info:
            await pull(f"{base}/live/s.flv", sink, settings=fast_settings())
    assert info.value.reason == "connect" and "certificate" in info.value.message.lower()
    assert sink.frames == []
