"""The fan-out's Python cost alone: hub -> push-writers -> a transport that discards.

`python -m bench.hotpath [--viewers 1000] [--seconds 10] [--flv]` publishes --seconds of a
2 Mbit/s-like stream (30 fps video, 8 kB frames, a 100 kB keyframe every 2 s, 43 AAC
frames/s) as fast as it can into a hub with --viewers push-mode viewers (servers/sink.py's
PushWriter, RTMP chunk or FLV tag serialisation), whose transports count bytes and send
nothing. No socket, no kernel: what is left is the per-frame and per-viewer bookkeeping
the fan-out bench cannot separate from the send syscalls. Reported: CPU microseconds per
viewer per media second (x 1e-4 = % of a core per viewer), and the same per write.
Compare two trees by running this module with each tree's `liverelay` on the path.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time

from liverelay.config import MediaSettings
from liverelay.hub import Hub, SourceKind, StreamKey
from liverelay.media.codecs import make_frame
from liverelay.media.flv import flv_tag
from liverelay.media.frame import Frame, FrameKind
from liverelay.media.rtmp import frame_chunks
from liverelay.servers.sink import PushWriter

KEY = StreamKey("v", "live", "s")


class NullTransport:
    """What PushWriter uses of an asyncio transport; counts instead of sending."""

    def __init__(self) -> None:
        self.writes = 0
        self.pieces = 0

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def writelines(self, pieces: list[bytes]) -> None:
        self.writes += 1
        self.pieces += len(pieces)


def stream_frames(seconds: int) -> list[Frame]:
    """Frames in decode order with source timestamps (ms)."""
    frames = [
        make_frame(FrameKind.VIDEO, 0, b"\x17\x00\x00\x00\x00" + bytes(40)),
        make_frame(FrameKind.AUDIO, 0, b"\xaf\x00\x12\x10"),
    ]
    events: list[tuple[float, int, int]] = []
    for i in range(seconds * 30):
        events.append((i * 1000 / 30, 0, i))
    for i in range(int(seconds * 43)):
        events.append((i * 1024000 / 44100, 1, i))
    for ts, kind, i in sorted(events):
        if kind == 0:
            body = b"\x17\x01" if i % 60 == 0 else b"\x27\x01"
            size = 100_000 if i % 60 == 0 else 8_000
            frames.append(make_frame(FrameKind.VIDEO, int(ts), body + bytes(3 + size)))
        else:
            frames.append(make_frame(FrameKind.AUDIO, int(ts), b"\xaf\x01" + bytes(370)))
    return frames


async def run(viewers: int, seconds: int, flv: bool) -> dict[str, float]:
    hub = Hub(MediaSettings())
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER, owner="bench")
    frames = stream_frames(seconds)
    pub.write(frames[0])
    pub.write(frames[1])
    transports = []
    for n in range(viewers):
        sub = await hub.play(KEY, protocol="bench", remote=f"v{n}")
        assert sub is not None
        transport = NullTransport()
        if flv:
            key: object = "flv"
            serialise = flv_tag
        else:
            key = ("rtmp", 4096, 1)
            serialise = functools.partial(frame_chunks, chunk_size=4096, stream_id=1)
        pusher = PushWriter(
            sub,
            transport,  # type: ignore[arg-type]
            key,
            serialise,
            asyncio.sleep,  # type: ignore[arg-type]
            backlog_bytes=1 << 30,
            remote=f"v{n}",
        )
        sub.set_waker(pusher.wake)
        pusher.wake()
        transports.append(transport)
    for t in transports:
        t.writes = t.pieces = 0
    cpu0 = time.process_time()
    for frame in frames[2:]:
        pub.write(frame)
    cpu = time.process_time() - cpu0
    writes = sum(t.writes for t in transports)
    pub.close()
    return {
        "viewers": viewers,
        "media_s": seconds,
        "cpu_s": cpu,
        "us_per_viewer_per_media_s": cpu * 1e6 / viewers / seconds,
        "writes_per_viewer_per_s": writes / viewers / seconds,
        "us_per_write": cpu * 1e6 / max(writes, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--flv", action="store_true", help="FLV tags instead of RTMP chunks")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = [asyncio.run(run(args.viewers, args.seconds, args.flv)) for _ in range(args.repeat)]
    best = min(results, key=lambda r: r["cpu_s"])
    print(
        ("flv " if args.flv else "rtmp ")
        + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in best.items())
    )


if __name__ == "__main__":
    main()
