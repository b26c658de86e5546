"""The RTMP listener against real clients: ffmpeg publishes, ffprobe/ffmpeg/our puller play."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.conftest import ffmpeg_publish
from tests.integration.rtmp_helpers import (
    RecordingSink,
    RtmpNode,
    RtmpTestClient,
    ffprobe_count,
    raw_socket,
    run_tool,
    started_node,
)

from liverelay.hub import StreamKey
from liverelay.media.frame import FrameKind
from liverelay.media.rtmp import RtmpClientSession
from liverelay.media.rtmp import messages as m
from liverelay.sources.rtmp import pull


@pytest.fixture
async def rtmp_node() -> AsyncIterator[RtmpNode]:
    async for node in started_node():
        yield node


async def test_the_server_holds_the_listener_deps_it_was_given(rtmp_node: RtmpNode) -> None:
    assert rtmp_node.server.deps is rtmp_node.deps


async def test_ffmpeg_publish_ffprobe_decodes_video_and_audio(
    rtmp_node: RtmpNode, ffmpeg: str, ffprobe: str, sample_flv: Path
) -> None:
    with ffmpeg_publish(ffmpeg, sample_flv, rtmp_node.url()) as proc:
        await rtmp_node.wait_source(rtmp_node.key())
        counts, err = await ffprobe_count(ffprobe, rtmp_node.url(), 4)
        assert proc.poll() is None, "publisher must keep running"
    print(f"ffprobe over RTMP, 4 s: {counts}")
    assert err.strip() == "", f"decode errors: {err}"
    # 30 fps video, AAC at 44.1 kHz (1024 samples per frame): 4 s of each, +-1 frame of slack
    # for where the interval starts and ends.
    assert 119 <= counts["video"] <= 125
    assert 170 <= counts["audio"] <= 176


async def test_mid_stream_join_starts_with_metadata_headers_and_a_keyframe(
    rtmp_node: RtmpNode, ffmpeg: str, sample_flv: Path
) -> None:
    with ffmpeg_publish(ffmpeg, sample_flv, rtmp_node.url()):
        await rtmp_node.wait_source(rtmp_node.key())
        await asyncio.sleep(1.3)  # join in the middle of a 2 s GOP
        sink = RecordingSink()
        task = asyncio.create_task(pull(rtmp_node.url(), sink, settings=rtmp_node.settings.relay))
        try:
            deadline = time.monotonic() + 5
            while sink.count(FrameKind.VIDEO) < 10 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    frames = sink.frames
    assert frames[0].kind == FrameKind.DATA and frames[0].payload.startswith(b"\x02\x00\x0aonMetaData")
    video = [f for f in frames if f.kind == FrameKind.VIDEO]
    assert video[0].config, "AVC sequence header comes before any coded frame"
    coded = [f for f in video if not f.config]
    assert coded[0].keyframe, "a joining viewer starts on a keyframe"
    ts = [f.timestamp for f in coded]
    assert ts == sorted(ts)
    assert sink.first_video_at is not None
    ttff_ms = (sink.first_video_at - sink.started) * 1000
    print(f"time to first video keyframe (GOP cache): {ttff_ms:.1f} ms")


async def test_second_publisher_is_refused_and_first_continues(
    rtmp_node: RtmpNode, ffmpeg: str, sample_flv: Path
) -> None:
    with ffmpeg_publish(ffmpeg, sample_flv, rtmp_node.url()) as first:
        await rtmp_node.wait_source(rtmp_node.key())
        owner = rtmp_node.hub.get(rtmp_node.key()).owner
        second = RtmpTestClient(rtmp_node.port, "live", publish="s")
        try:
            await second.connect()
            await second.pump_until(lambda: second.statuses, timeout=5)
            assert second.codes() == [m.PUBLISH_BAD_NAME]
            assert second.statuses[0].level == "error"
        finally:
            second.close()
        # A second ffmpeg gives up too.
        rc, _, _err = await run_tool(
            ffmpeg,
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-i",
            str(sample_flv),
            "-t",
            "1",
            "-c",
            "copy",
            "-f",
            "flv",
            rtmp_node.url(),
            timeout=20,
        )
        assert rc != 0
        stream = rtmp_node.hub.get(rtmp_node.key())
        assert stream is not None and stream.owner == owner and first.poll() is None
        before = stream.stats()["frames_in"]
        await asyncio.sleep(0.5)
        assert stream.stats()["frames_in"] > before, "the first publisher keeps feeding the stream"


async def test_publisher_disconnect_ends_viewers_cleanly(
    rtmp_node: RtmpNode, ffmpeg: str, sample_flv: Path
) -> None:
    sink = RecordingSink()
    with ffmpeg_publish(ffmpeg, sample_flv, rtmp_node.url()):
        await rtmp_node.wait_source(rtmp_node.key())
        viewer = await asyncio.create_subprocess_exec(
            ffmpeg,
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            rtmp_node.url(),
            "-f",
            "null",
            "-",
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        puller = asyncio.create_task(pull(rtmp_node.url(), sink, settings=rtmp_node.settings.relay))
        await asyncio.sleep(1.5)
    # The publisher is gone (terminated on leaving the block).
    try:
        rc = await asyncio.wait_for(viewer.wait(), 5)
    finally:
        if viewer.returncode is None:
            viewer.kill()
            await viewer.wait()
    assert rc == 0, (await viewer.stderr.read()).decode()  # type: ignore[union-attr]
    await asyncio.wait_for(puller, 5)  # returns normally: a clean end of stream
    assert sink.count(FrameKind.VIDEO) > 10
    assert rtmp_node.hub.get(rtmp_node.key()) is None or not rtmp_node.hub.get(rtmp_node.key()).has_source


async def _closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """True once the server closes the socket (EOF or reset) within `timeout`."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout):
            while True:
                data = await loop.sock_recv(sock, 65536)
                if not data:
                    return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    finally:
        sock.close()


async def test_bad_connections_close_alone_while_viewer_keeps_receiving(
    rtmp_node: RtmpNode, ffmpeg: str, sample_flv: Path
) -> None:
    with ffmpeg_publish(ffmpeg, sample_flv, rtmp_node.url()) as publisher:
        await rtmp_node.wait_source(rtmp_node.key())
        sink = RecordingSink()
        puller = asyncio.create_task(pull(rtmp_node.url(), sink, settings=rtmp_node.settings.relay))
        try:
            await asyncio.sleep(0.5)
            before = len(sink.frames)
            t0 = time.monotonic()
            # 1. garbage instead of a handshake
            garbage = raw_socket(rtmp_node.port)
            garbage.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 8)
            assert await _closed_by_server(garbage, 3)
            # 2. a stalled handshake: C0 and half a C1, then nothing
            stalled = raw_socket(rtmp_node.port)
            stalled.sendall(b"\x03" + bytes(700))
            assert await _closed_by_server(stalled, 3), "handshake_timeout_s=1 must close it"
            # 3. an oversized message after a proper handshake and connect
            big = RtmpTestClient(rtmp_node.port, "live")
            await big.connect()
            await big.pump_until(lambda: big.session.connected, timeout=5)
            header = bytes([4]) + (0).to_bytes(3, "big") + (0xFFFFFF).to_bytes(3, "big") + b"\x09"
            await big.send(header + struct.pack("<I", 1) + bytes(1000))
            assert await big.pump_until(lambda: False, timeout=3) is False, "server must hang up"
            big.close()
            # 4. a peer that connects and closes at once
            raw_socket(rtmp_node.port).close()
            elapsed = time.monotonic() - t0
            await asyncio.sleep(0.5)
            assert not puller.done(), "the viewer is unaffected"
            gained = len(sink.frames) - before
            assert gained > 30 * (elapsed + 0.5) * 0.5, f"viewer got only {gained} frames in {elapsed:.1f}s"
            assert publisher.poll() is None
            assert rtmp_node.hub.get(rtmp_node.key()).has_source
        finally:
            puller.cancel()
            await asyncio.gather(puller, return_exceptions=True)


async def test_play_of_unknown_stream_gets_stream_not_found(rtmp_node: RtmpNode) -> None:
    client = RtmpTestClient(rtmp_node.port, "live", play="nothing-here")
    try:
        await client.connect()
        t0 = time.monotonic()
        await client.pump_until(lambda: m.PLAY_STREAM_NOT_FOUND in client.codes(), timeout=5)
        assert time.monotonic() - t0 < 3
        assert await client.pump_until(lambda: False, timeout=3) is False, "then the server closes"
    finally:
        client.close()


async def test_strict_vhost_rejects_connect(ffmpeg: str) -> None:
    node = RtmpNode()
    node.settings.media.default_vhost = ""
    await node.start()
    client = RtmpTestClient(node.port, "live", play="s")
    try:
        await client.connect()
        ended = await client.pump_until(lambda: client.session.state == "ended", timeout=5)
        assert ended and not client.session.connected
    finally:
        client.close()
        await node.close()


async def test_server_close_ends_publishers_and_viewers(ffmpeg: str, sample_flv: Path) -> None:
    node = await RtmpNode().start()
    sink = RecordingSink()
    try:
        with ffmpeg_publish(ffmpeg, sample_flv, node.url()) as publisher:
            await node.wait_source(node.key())
            puller = asyncio.create_task(pull(node.url(), sink, settings=node.settings.relay))
            await asyncio.sleep(0.5)
            await node.server.close()
            await asyncio.wait_for(asyncio.gather(puller, return_exceptions=True), 5)
            assert node.server.connection_count == 0
            assert node.hub.get(node.key()) is None or not node.hub.get(node.key()).has_source
            await asyncio.get_running_loop().run_in_executor(None, publisher.wait, 5)
    finally:
        await node.close()
    assert sink.frames


class _Domains:
    """Stands in for store.domains.DomainTable: host -> vhost."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    def vhost_for(self, host: str) -> str | None:
        return self.table.get(host)


async def _connect_app(port: int, tc_url: str, app: str = "live") -> RtmpTestClient:
    client = RtmpTestClient(port, app, publish="cam")
    client.session.tc_url = tc_url
    await client.connect()
    await client.pump_until(lambda: client.session.state in ("ended", "publishing") or client.statuses, 5)
    return client


async def test_vhost_from_tcurl_domain_table_and_query() -> None:
    node = RtmpNode(domains=_Domains({"play.example.com": "vh1", "other.example.com": "vh2"}))
    node.settings.media.default_vhost = ""  # strict
    await node.start()
    try:
        known = await _connect_app(node.port, f"rtmp://play.example.com:{node.port}/live")
        assert m.PUBLISH_START in known.codes()
        assert node.hub.get(StreamKey("vh1", "live", "cam")) is not None
        known.close()
        by_query = await _connect_app(node.port, f"rtmp://127.0.0.1:{node.port}/live?vhost=other.example.com")
        assert m.PUBLISH_START in by_query.codes()
        assert node.hub.get(StreamKey("vh2", "live", "cam")) is not None
        by_query.close()
        unknown = await _connect_app(node.port, f"rtmp://nobody.example.com:{node.port}/live")
        assert unknown.session.state == "ended" and not unknown.codes()
        unknown.close()
    finally:
        await node.close()


async def test_idle_publisher_times_out_and_every_end_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    node = RtmpNode()
    node.settings.media.idle_timeout_s = 0.5
    await node.start()
    caplog.set_level(logging.INFO, logger="liverelay.rtmp")
    try:
        client = await _connect_app(node.port, f"rtmp://127.0.0.1:{node.port}/live")
        assert m.PUBLISH_START in client.codes()
        t0 = time.monotonic()
        assert await client.pump_until(lambda: False, timeout=3) is False
        assert time.monotonic() - t0 < 2
        client.close()
        await asyncio.sleep(0.1)
    finally:
        await node.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "liverelay.rtmp"]
    (line,) = [x for x in lines if "idle timeout" in x]
    assert " publish __defaultVhost__/live/cam in=" in line and " out=" in line


async def test_viewer_that_stops_reading_is_dropped_alone(ffmpeg: str, sample_flv: Path) -> None:
    node = RtmpNode()
    node.settings.media.viewer_queue_bytes = 256 * 1024
    node.settings.media.viewer_max_skips = 1
    await node.start()
    # Faster than real time, so a stalled reader falls behind within a second or two.
    publisher = await asyncio.create_subprocess_exec(
        ffmpeg,
        "-hide_banner",
        "-loglevel",
        "error",
        "-readrate",
        "10",
        "-stream_loop",
        "-1",
        "-i",
        str(sample_flv),
        "-c",
        "copy",
        "-f",
        "flv",
        node.url(),
        stdin=asyncio.subprocess.DEVNULL,
    )
    stalled = socket.socket()
    try:
        await node.wait_source(node.key())
        sink = RecordingSink()
        settings = node.settings.relay
        puller = asyncio.create_task(pull(node.url(), sink, settings=settings))
        # The puller plays first (its first frame is the event), so both viewers are attached below.
        async with asyncio.timeout(10):
            while sink.first_at is None and not puller.done():
                await asyncio.sleep(0.01)
        # A viewer with a tiny receive buffer that plays and then never reads again.
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(stalled, ("127.0.0.1", node.port))
        client = RtmpClientSession(app="live", tc_url=f"rtmp://127.0.0.1:{node.port}/live", play="s")
        client.initiate()
        await loop.sock_sendall(stalled, client.data_to_send())
        async with asyncio.timeout(5):
            while client.state != "playing":
                client.receive_data(await loop.sock_recv(stalled, 4096))
                out = client.data_to_send()
                if out:
                    await loop.sock_sendall(stalled, out)
        stream = node.hub.get(node.key())
        assert stream is not None and stream.viewer_count == 2
        deadline = time.monotonic() + 15
        while stream.viewer_count > 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert stream.viewer_count == 1, "the stalled viewer must be dropped"
        before = sink.count(FrameKind.VIDEO)
        await asyncio.sleep(0.5)
        assert sink.count(FrameKind.VIDEO) > before and not puller.done(), "the other viewer keeps going"
        puller.cancel()
        await asyncio.gather(puller, return_exceptions=True)
    finally:
        stalled.close()
        if publisher.returncode is None:
            publisher.kill()
        await publisher.wait()
        await node.close()
