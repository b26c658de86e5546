"""The edge's Python cost alone: origin bytes -> pull reader -> hub -> viewers' push-writers.

`python -m bench.edgepath [--viewers 10] [--seconds 20] [--read-kb 15.5] [--repeat 5]`
builds, without any socket, what an RTMP origin sends to a pulling edge: a client and a
server session of our own (sans-IO) connect and play in memory, then the server sends
--seconds of a 2 Mbit/s-like stream (bench.hotpath's frames: 30 fps video, a 100 kB
keyframe every 2 s, 43 AAC frames/s) at chunk size 4096, like nginx-rtmp. Those bytes are
cut into reads of --read-kb (the edge's coalesced reads: ~40 ms of media, `relay.
pull_read_coalesce_ms`) and fed to the pull's reader (sources/rtmp.py `_PullReader.
data_received`: session parsing, frame runs), whose sink writes the runs into a hub stream
with --viewers push-mode viewers (servers/sink.py PushWriter, RTMP chunks) on transports
that count bytes and send nothing. What is left is the Python work per read the edge bench
cannot separate from the kernel's sends and the event loop: reported as CPU microseconds
per read and per media second (x 1e-4 = % of one core). Compare two trees by running this
module with each tree's `liverelay` first on the path (PYTHONPATH=OTHER/src).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import statistics
import time

from liverelay.config import MediaSettings
from liverelay.hub import Hub, Publication, SourceKind, StreamKey
from liverelay.media.frame import Frame
from liverelay.media.rtmp import RtmpClientSession, RtmpServerSession, frame_chunks
from liverelay.media.rtmp.events import PlayRequest
from liverelay.servers.sink import PushWriter
from liverelay.sources.rtmp import _PullReader

from .hotpath import NullTransport, stream_frames

KEY = StreamKey("v", "live", "s")


class HubSink:
    """The FrameSink of a relay pull, reduced to the hub write (relay/pull/supervisor.py
    adds byte accounting per run)."""

    def __init__(self, pub: Publication) -> None:
        self.pub = pub

    def on_frame(self, frame: Frame) -> None:
        self.pub.write(frame)

    def on_frames(self, frames: list[Frame]) -> None:
        self.pub.write_run(frames)

    def on_unpublished(self) -> bool:
        return True


class DiscardTransport(NullTransport):
    """What the pull reader writes back (acknowledgements): dropped."""

    def write(self, data: bytes) -> None:
        pass


def origin_wire(seconds: int) -> tuple[RtmpClientSession, bytes]:
    """A client session that has connected and asked to play, and the server's bytes
    that follow (the media of `seconds`)."""
    client = RtmpClientSession(app="live", tc_url="rtmp://127.0.0.1/live", play="s")
    server = RtmpServerSession(chunk_size=4096, connect_handler=lambda request: None)
    client.initiate()
    to_server = client.data_to_send()
    stream_id = 0
    for _ in range(50):
        if not to_server:
            break
        for event in server.receive_data(to_server):
            if isinstance(event, PlayRequest):
                server.start_play(event)
                stream_id = event.stream_id
        to_client = server.data_to_send()
        to_server = b""
        if to_client:
            client.receive_data(to_client)
            to_server = client.data_to_send()
    if not stream_id:
        raise RuntimeError("the in-memory play did not start")
    for frame in stream_frames(seconds):
        server.send_frame(frame, stream_id)
    return client, server.data_to_send()


async def run(viewers: int, seconds: int, read_bytes: int) -> dict[str, float]:
    client, wire = origin_wire(seconds)
    loop = asyncio.get_running_loop()
    hub = Hub(MediaSettings())
    pub = hub.publish(KEY, kind=SourceKind.RELAY_PLAY, owner="bench")
    reader = _PullReader(client, HubSink(pub), "rtmp://bench/live/s", loop)
    reader.connection_made(DiscardTransport())  # type: ignore[arg-type]
    reads = [wire[i : i + read_bytes] for i in range(0, len(wire), read_bytes)]
    # The first reads carry the headers and the first keyframe: the viewers join after them.
    head, reads = reads[:8], reads[8:]
    for data in head:
        reader.data_received(data)
    transports = []
    for n in range(viewers):
        sub = await hub.play(KEY, protocol="bench", remote=f"v{n}")
        assert sub is not None
        transport = NullTransport()
        pusher = PushWriter(
            sub,
            transport,  # type: ignore[arg-type]
            ("rtmp", 4096, 1),
            functools.partial(frame_chunks, chunk_size=4096, stream_id=1),
            asyncio.sleep,  # type: ignore[arg-type]
            backlog_bytes=1 << 30,
            remote=f"v{n}",
        )
        sub.set_waker(pusher.wake, pusher.deliver)
        pusher.wake()
        transports.append(transport)
    for t in transports:
        t.writes = t.pieces = 0
    gc.collect()
    cpu0 = time.process_time()
    for data in reads:
        reader.data_received(data)
    cpu = time.process_time() - cpu0
    if reader.finished.done():
        reader.finished.result()  # a parse failure is a harness bug: raise it
    writes = sum(t.writes for t in transports)
    media_s = seconds * len(reads) / (len(reads) + len(head))
    pub.close()
    return {
        "us_per_read": cpu * 1e6 / len(reads),
        "us_per_media_s": cpu * 1e6 / media_s,
        "reads_per_media_s": len(reads) / media_s,
        "writes_per_viewer_per_s": writes / max(viewers, 1) / media_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--read-kb", type=float, default=15.5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    read_bytes = int(args.read_kb * 1024)
    results = [asyncio.run(run(args.viewers, args.seconds, read_bytes)) for _ in range(args.repeat)]
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(
        f"edgepath viewers={args.viewers} read_kb={args.read_kb} "
        + " ".join(f"{k}={v:.1f}" for k, v in med.items())
        + f" (% of a core: {med['us_per_media_s'] * 1e-4:.3f})"
    )


if __name__ == "__main__":
    main()
