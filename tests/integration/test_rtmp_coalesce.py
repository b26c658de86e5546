"""Read coalescing of a publisher nobody watches (servers/rtmp.py, SO_RCVLOWAT).

While a published stream has no viewer the node raises the publisher socket's
SO_RCVLOWAT so its loop wakes a few times a second instead of per message. What must
hold: a viewer that joins gets the GOP and then every frame, with no hole at the switch
(the mark drops back to one byte at the join); and a quiet publisher's last command (an
unpublish on a connection it keeps open) is still handled within about a second.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from pathlib import Path

from tests.conftest import ffmpeg_publish, poll_until
from tests.integration.rtmp_helpers import RecordingSink, RtmpNode, RtmpTestClient

from liverelay.media.codecs import make_frame
from liverelay.media.frame import FrameKind
from liverelay.media.rtmp import messages as m
from liverelay.servers.rtmp import COALESCE_TICK_S, RtmpServer
from liverelay.sources.rtmp import pull


def publisher_marks(server: RtmpServer) -> list[int]:
    """SO_RCVLOWAT of every publishing connection, read back from the kernel."""
    marks = []
    for conn in server.connections:
        if conn.role == "publish" and conn.transport is not None:
            sock = conn.transport.get_extra_info("socket")
            marks.append(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT))
    return marks


async def test_viewer_joining_an_unwatched_publisher_gets_every_frame(ffmpeg: str, sample_flv: Path) -> None:
    node = await RtmpNode().start()
    try:
        with ffmpeg_publish(ffmpeg, sample_flv, node.url()):
            await node.wait_source(node.key())
            await poll_until(lambda: any(x > 1 for x in publisher_marks(node.server)), 10, "reads coalesced")
            sink = RecordingSink()
            puller = asyncio.create_task(pull(node.url(), sink, settings=node.settings.relay))
            try:
                await poll_until(lambda: publisher_marks(node.server) == [1], 5, "mark back to 1 byte")
                await poll_until(lambda: sink.count(FrameKind.VIDEO) >= 90, 10, "3 s of video")
            finally:
                puller.cancel()
                await asyncio.gather(puller, return_exceptions=True)
        assert sink.first_video_at is not None and sink.first_video_at - sink.started < 1.0
        stamps = [f.timestamp for f in sink.frames if f.kind == FrameKind.VIDEO and not f.config]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        # 30 fps: a frame every 33 ms. A hole at the switch would show as a gap of a
        # coalescing window (250 ms) or more.
        assert max(gaps) <= 100, f"video timestamps jump by {max(gaps)} ms"
    finally:
        await node.close()


async def test_quiet_publisher_unpublish_is_handled_within_a_tick() -> None:
    node = await RtmpNode().start()
    client = RtmpTestClient(node.port, "live", publish="s")
    try:
        await client.connect()
        assert await client.pump_until(lambda: m.PUBLISH_START in client.codes())
        # ~24 kB/s of audio for 1.5 s with no viewer: enough for the node to coalesce.
        payload = b"\xaf\x01" + bytes(600)
        t0 = time.monotonic()
        for i in range(60):
            client.session.send_frame(make_frame(FrameKind.AUDIO, i * 25, payload))
            await client.send(client.session.data_to_send())
            await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.025 - time.monotonic()))
        await poll_until(lambda: any(x > 1 for x in publisher_marks(node.server)), 5, "reads coalesced")
        client.session.delete_stream(client.session.stream_id)
        await client.send(client.session.data_to_send())
        # The connection stays open: only the tick can read the unpublish below the mark.
        asked = time.monotonic()
        took = (
            await poll_until(
                lambda: (s := node.hub.get(node.key())) is None or not s.has_source, 5, "unpublished"
            )
            - asked
        )
        assert took < COALESCE_TICK_S * 2 + 0.5, f"unpublish handled after {took:.2f}s"
    finally:
        client.close()
        await node.close()
