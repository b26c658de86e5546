"""sources.rtmp against real origins (nginx-rtmp and our own node), nginx-rtmp pulling from us,
and every failure reason of the pull contract."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from tests.conftest import ffmpeg_publish, free_port, needs_nginx_rtmp
from tests.integration.rtmp_helpers import (
    RecordingSink,
    RtmpNode,
    RtmpTestClient,
    fast_settings,
    ffprobe_count,
    nginx_rtmp,
)

from liverelay.media.frame import FrameKind
from liverelay.media.rtmp import messages as m
from liverelay.sources.base import SourceError
from liverelay.sources.rtmp import pull


async def _pull_for(url: str, seconds: float) -> tuple[RecordingSink, BaseException | None]:
    sink = RecordingSink()
    task = asyncio.create_task(pull(url, sink, settings=fast_settings().relay))
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
    result = await asyncio.gather(task, return_exceptions=True)
    exc = result[0] if isinstance(result[0], BaseException) else None
    return sink, None if isinstance(exc, asyncio.CancelledError) else exc


async def _pull_from_origin(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> BaseException | None:
    """Pull live/s for up to 5 s from a 127.0.0.1 origin that runs `handler` on each connection."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        _, exc = await _pull_for(f"rtmp://127.0.0.1:{port}/live/s", 5)
    finally:
        server.close()
    return exc


async def _wait_for_publish(port: int, app: str, name: str, timeout: float = 10) -> None:
    """Wait until the origin serves media for app/name (a short probe play)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client = RtmpTestClient(port, app, play=name)
        try:
            await client.connect()
            if await client.pump_until(lambda c=client: any(f.kind == FrameKind.VIDEO for f in c.frames), 2):
                return
        except (TimeoutError, OSError):
            pass
        finally:
            client.close()
        await asyncio.sleep(0.2)
    raise AssertionError(f"origin on {port} never served {app}/{name}")


@needs_nginx_rtmp
async def test_pull_from_nginx_rtmp(tmp_path: Path, ffmpeg: str, sample_flv: Path) -> None:
    with nginx_rtmp(tmp_path / "nginx") as port:
        url = f"rtmp://127.0.0.1:{port}/live/s"
        with ffmpeg_publish(ffmpeg, sample_flv, url):
            await _wait_for_publish(port, "live", "s")
            # Our digest handshake is accepted and nginx signs S2 over our digest.
            probe = RtmpTestClient(port, "live", play="s")
            await probe.connect()
            await probe.pump_until(lambda: m.PLAY_START in probe.codes(), 5)
            assert probe.session.handshake.server_verified
            probe.close()
            sink, exc = await _pull_for(url, 3.0)
    assert exc is None, exc
    assert sink.frames[0].kind == FrameKind.DATA
    video = [f for f in sink.frames if f.kind == FrameKind.VIDEO]
    assert video[0].config
    # nginx-rtmp has no GOP cache: it starts at the next keyframe (wait_key) - up to 2 s in.
    coded = [f for f in video if not f.config]
    assert coded and coded[0].keyframe
    assert sink.count(FrameKind.AUDIO) > 40
    assert sink.first_video_at is not None
    print(f"nginx-rtmp origin: first keyframe after {(sink.first_video_at - sink.started) * 1000:.0f} ms")


@needs_nginx_rtmp
async def test_nginx_rtmp_edge_pulls_from_our_node(
    tmp_path: Path, ffmpeg: str, ffprobe: str, sample_flv: Path
) -> None:
    node = await RtmpNode().start()
    try:
        edge_app = f"application edge {{ live on; pull rtmp://127.0.0.1:{node.port}/live; }}"
        with (
            ffmpeg_publish(ffmpeg, sample_flv, node.url()),
            nginx_rtmp(tmp_path / "nginx", extra_app=edge_app) as port,
        ):
            await node.wait_source(node.key())
            counts, err = await ffprobe_count(ffprobe, f"rtmp://127.0.0.1:{port}/edge/s", 3)
        print(f"ffprobe via nginx-rtmp edge pulling from our node: {counts}")
        assert err.strip() == ""
        assert counts["video"] >= 85 and counts["audio"] >= 120
    finally:
        await node.close()


async def test_pull_from_our_node_ends_cleanly_when_publisher_stops(ffmpeg: str, sample_flv: Path) -> None:
    node = await RtmpNode().start()
    try:
        sink = RecordingSink()
        with ffmpeg_publish(ffmpeg, sample_flv, node.url()):
            await node.wait_source(node.key())
            task = asyncio.create_task(pull(node.url() + "?token=abc", sink, settings=node.settings.relay))
            await asyncio.sleep(1.0)
        await asyncio.wait_for(task, 5)  # returns (no exception)
        assert sink.count(FrameKind.VIDEO) > 10
    finally:
        await node.close()


async def test_pull_stream_not_found_is_protocol_error() -> None:
    node = await RtmpNode().start()
    try:
        _, exc = await _pull_for(node.url(stream="missing"), 5)
        assert isinstance(exc, SourceError) and exc.reason == "protocol"
        assert "stream not found at origin" in exc.message
    finally:
        await node.close()


async def test_pull_connect_refused() -> None:
    port = free_port()  # nothing listens there
    _, exc = await _pull_for(f"rtmp://127.0.0.1:{port}/live/s", 5)
    assert isinstance(exc, SourceError) and exc.reason == "connect"


async def test_pull_silent_origin_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        t0 = time.monotonic()
        _, exc = await _pull_for(f"rtmp://127.0.0.1:{port}/live/s", 10)
        elapsed = time.monotonic() - t0
    assert isinstance(exc, SourceError) and exc.reason == "timeout"
    assert elapsed < fast_settings().relay.connect_timeout_s + 1.5


async def test_pull_origin_closing_before_media_is_eof() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()

    exc = await _pull_from_origin(hang_up)
    assert isinstance(exc, SourceError) and exc.reason == "eof"


async def test_pull_garbage_origin_is_protocol_error() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"\x09" + bytes(4000))
        await writer.drain()
        await asyncio.sleep(2)
        writer.close()

    exc = await _pull_from_origin(garbage)
    assert isinstance(exc, SourceError) and exc.reason == "protocol"


async def test_cancel_closes_the_socket_at_once(ffmpeg: str, sample_flv: Path) -> None:
    node = await RtmpNode().start()
    try:
        with ffmpeg_publish(ffmpeg, sample_flv, node.url()):
            await node.wait_source(node.key())
            sink = RecordingSink()
            task = asyncio.create_task(pull(node.url(), sink, settings=node.settings.relay))
            await asyncio.sleep(0.5)
            assert node.hub.get(node.key()).viewer_count == 1
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            deadline = time.monotonic() + 2
            while node.hub.get(node.key()).viewer_count and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert node.hub.get(node.key()).viewer_count == 0
    finally:
        await node.close()


async def test_pull_over_rtmps_through_a_tls_terminator(
    tmp_path: Path, ffmpeg: str, sample_flv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A self-signed certificate for 127.0.0.1, trusted by the puller's TLS context.
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    real_context = ssl.create_default_context
    monkeypatch.setattr(
        "liverelay.sources.rtmp.ssl.create_default_context", lambda *a, **k: real_context(cafile=str(cert))
    )
    node = await RtmpNode().start()

    async def terminate_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", node.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    tls = await asyncio.start_server(terminate_tls, "127.0.0.1", 0, ssl=server_ctx)
    tls_port = tls.sockets[0].getsockname()[1]
    try:
        with ffmpeg_publish(ffmpeg, sample_flv, node.url()):
            await node.wait_source(node.key())
            sink, exc = await _pull_for(f"rtmps://127.0.0.1:{tls_port}/live/s", 1.5)
        assert exc is None, exc
        assert sink.count(FrameKind.VIDEO) > 10 and sink.frames[0].kind == FrameKind.DATA
    finally:
        tls.close()
        await node.close()


class _WaitingSink(RecordingSink):
    """Keeps the connection when the origin's publisher leaves (as a one-origin relay does)."""

    def on_unpublished(self) -> bool:
        return True


async def test_pull_deadline_runs_from_the_last_read_and_fires_when_media_stops(sample_flv: Path) -> None:
    # One timer per connection (sources/rtmp.py _PullReader): reads keep pushing it back,
    # so media flowing for several deadlines never times out; once the origin's publisher
    # leaves and nothing comes (the republish is later than the deadline), it fires about
    # one deadline after the last read.
    from tests.adversarial.fake_origin import (
        MEDIA_BEFORE_FAULT_S,
        REPUBLISH_AFTER_S,
        FakeOrigin,
        sample_frames,
    )

    settings = fast_settings().relay.model_copy(
        update={"no_media_timeout_s": 0.3, "first_frame_timeout_s": 0.3}
    )
    frames = sample_frames(str(sample_flv))
    with FakeOrigin("republish", frames) as origin:  # its publisher is away 0.5 s > 0.3 s
        sink = _WaitingSink()
        started = time.monotonic()
        task = asyncio.create_task(pull(f"rtmp://127.0.0.1:{origin.port}/live/s", sink, settings=settings))
        done, _ = await asyncio.wait({task}, timeout=10)
        elapsed = time.monotonic() - started
        assert done, "the deadline never fired"
        exc = task.exception()
        assert isinstance(exc, SourceError) and exc.reason == "timeout" and "no media" in str(exc), exc
        # Media flowed for MEDIA_BEFORE_FAULT_S (5 deadlines) without a timeout ...
        assert len(sink.frames) > 20
        assert elapsed >= MEDIA_BEFORE_FAULT_S, elapsed
        # ... and the silence after it ended the pull before the republish came.
        # (the republished media would start its timestamps again from 0)
        video = [f.timestamp for f in sink.frames if f.kind == FrameKind.VIDEO and not f.config]
        assert video == sorted(video)
        assert elapsed < MEDIA_BEFORE_FAULT_S + REPUBLISH_AFTER_S + 2.0, elapsed
        assert not origin.connections or len(origin.connections) == 1
