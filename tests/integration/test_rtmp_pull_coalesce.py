"""Read coalescing of the RTMP pull (sources/rtmp.py, netio.ReadCoalescer, SO_RCVLOWAT).

Two pulls play the same origin at once, one with `relay.pull_read_coalesce_ms` = 0 (off)
and one with 40 ms. The origin sends every message as it comes (viewer_flush_ms = 0), so
the uncoalesced pull wakes once per message. What must hold: the coalesced pull reads
clearly fewer times per second; it gets every frame, in order, timestamps intact; and
when the publisher goes quiet mid-stream (connection kept open), the last frame, far
below the mark, still arrives within the fallback tick (2 windows), not at the
no-media deadline.

A second test has the origin send in bursts, as nginx-rtmp does (it corks a player's
output), with a small message a moment after each burst: the tick must follow the bursts'
rhythm (netio.ReadCoalescer's adaptive tick) instead of firing before every next burst,
which costs two wake-ups (the timer, then a read of the stray message) per burst.
"""

from __future__ import annotations

import asyncio
import time

from tests.integration.rtmp_helpers import RtmpNode, RtmpTestClient, fast_settings

from liverelay.config import Settings
from liverelay.media.codecs import make_frame
from liverelay.media.frame import Frame, FrameKind
from liverelay.media.rtmp import RtmpClientSession
from liverelay.media.rtmp import messages as m
from liverelay.sources.rtmp import pull

FPS = 30
FRAMES = 4 * FPS  # 4 s of video at ~220 kB/s: a 40 ms mark of ~8.8 kB
WINDOW = (4 * FPS, 7 * FPS)  # (steps) reads counted from 2 s to 3.5 s: the rate is known by then
VIDEO_BYTES = 7000
AUDIO_BYTES = 300


class CountingSink:
    """A FrameSink that keeps the frames, counts its calls (one per read with media) and
    notes when each frame arrived."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.arrived: list[float] = []
        self.calls = 0

    def on_frame(self, frame: Frame) -> None:
        self.on_frames([frame])

    def on_frames(self, frames: list[Frame]) -> None:
        self.calls += 1
        now = time.monotonic()
        self.frames.extend(frames)
        self.arrived.extend(now for _ in frames)

    def on_unpublished(self) -> bool:
        return False

    def media(self) -> list[tuple[int, int, int]]:
        return [(f.kind, f.timestamp, len(f.payload)) for f in self.frames if not f.config]


def pull_settings(coalesce_ms: int) -> Settings:
    settings = fast_settings()
    settings.relay.pull_read_coalesce_ms = coalesce_ms
    return settings


async def wait_for(predicate: object, timeout: float, what: str) -> None:
    for _ in range(int(timeout / 0.01) + 1):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what}: not within {timeout}s")


async def start_publishing(origin: RtmpNode, publisher: RtmpTestClient) -> RtmpClientSession:
    """Publish into `origin` (codec headers sent) and return the publisher's session."""
    await publisher.connect()
    assert await publisher.pump_until(lambda: m.PUBLISH_START in publisher.codes())
    session = publisher.session
    session.send_frame(make_frame(FrameKind.VIDEO, 0, b"\x17\x00\x00\x00\x00" + bytes(30)))
    session.send_frame(make_frame(FrameKind.AUDIO, 0, b"\xaf\x00\x12\x10"))
    await publisher.send(session.data_to_send())
    await origin.wait_source(origin.key())
    return session


async def test_coalesced_pull_reads_fewer_times_keeps_every_frame_and_a_quiet_tail() -> None:
    origin_settings = fast_settings()
    origin_settings.media.viewer_flush_ms = 0  # the origin sends each message as it comes
    origin = await RtmpNode(origin_settings).start()
    publisher = RtmpTestClient(origin.port, "live", publish="s")
    plain, coalesced = CountingSink(), CountingSink()
    pulls: list[asyncio.Task[None]] = []
    try:
        session = await start_publishing(origin, publisher)
        for sink, ms in ((plain, 0), (coalesced, 40)):
            pulls.append(asyncio.create_task(pull(origin.url(), sink, settings=pull_settings(ms).relay)))

        sent: list[tuple[int, int, int]] = []
        counts: list[tuple[float, int, int]] = []  # (time, plain calls, coalesced calls)
        t0 = time.monotonic()
        for step in range(2 * FRAMES):  # a video frame, half a frame later an audio frame
            i = step // 2
            ts = i * 1000 // FPS
            if step % 2 == 0:
                kind, payload = (
                    FrameKind.VIDEO,
                    (b"\x17\x01" if i % FPS == 0 else b"\x27\x01") + bytes(VIDEO_BYTES - 2),
                )
            else:
                kind, payload = FrameKind.AUDIO, b"\xaf\x01" + bytes(AUDIO_BYTES - 2)
            session.send_frame(make_frame(kind, ts, payload))
            await publisher.send(session.data_to_send())  # one write per message
            sent.append((kind, ts, len(payload)))
            if step in WINDOW:
                counts.append((time.monotonic(), plain.calls, coalesced.calls))
            await asyncio.sleep(max(0.0, t0 + (step + 1) / (2 * FPS) - time.monotonic()))
        # The publisher goes quiet and keeps its connection: the last (small) frame sits
        # below the coalesced pull's mark until the fallback tick reads it.
        tail = (FrameKind.AUDIO, FRAMES * 1000 // FPS, 40)
        session.send_frame(make_frame(FrameKind.AUDIO, tail[1], b"\xaf\x01" + bytes(38)))
        await publisher.send(session.data_to_send())
        sent_at = time.monotonic()
        sent.append(tail)
        await wait_for(lambda: tail in coalesced.media() and tail in plain.media(), 5, "the quiet tail")

        window_s = counts[1][0] - counts[0][0]
        plain_reads = counts[1][1] - counts[0][1]
        coalesced_reads = counts[1][2] - counts[0][2]
        print(f"reads in {window_s:.2f}s: plain {plain_reads}, coalesced {coalesced_reads}")
        # Uncoalesced: about one read per message (60/s); coalesced: one per ~40 ms (~25/s).
        assert plain_reads >= 0.5 * 2 * FPS * window_s, f"{plain_reads} plain reads in {window_s:.2f}s"
        assert coalesced_reads <= 0.6 * plain_reads, f"{coalesced_reads} vs {plain_reads} reads"

        late = coalesced.arrived[coalesced.media().index(tail)] - sent_at
        # Tick = 2 x 40 ms after the last read; the no-media deadline would be 3 s.
        assert late < 1.0, f"the tail waited {late:.2f}s below the mark"

        for sink in (plain, coalesced):
            got = sink.media()
            start = sent.index(got[0])  # joined at the GOP the origin had cached
            assert got == sent[start:], "frames lost, reordered or restamped"
            assert start <= 2 * FPS * 2, "the pull joined late"
    finally:
        for task in pulls:
            task.cancel()
        await asyncio.gather(*pulls, return_exceptions=True)
        publisher.close()
        await origin.close()


BURST_S = 0.09  # a burst every 90 ms: past the 80 ms short tick, within the 120 ms longest
BURSTS = 45  # ~4 s
BURST_WINDOW = (20, 40)  # reads counted from burst 20 (the rate and rhythm are known by then)


async def test_a_bursty_origin_is_read_once_per_burst() -> None:
    origin_settings = fast_settings()
    origin_settings.media.viewer_flush_ms = 0  # the origin sends each message as it comes
    origin = await RtmpNode(origin_settings).start()
    publisher = RtmpTestClient(origin.port, "live", publish="s")
    sink = CountingSink()
    task: asyncio.Task[None] | None = None
    try:
        session = await start_publishing(origin, publisher)
        task = asyncio.create_task(pull(origin.url(), sink, settings=pull_settings(40).relay))

        audio = b"\xaf\x01" + bytes(AUDIO_BYTES - 2)
        counts: list[int] = []
        sent = 0
        t0 = time.monotonic()
        for burst in range(BURSTS):
            ts = round(burst * BURST_S * 1000)
            # The burst: one large video message (one write of the origin, so one arrival;
            # 14 kB, above a 40 ms mark of ~6.4 kB at this rate)...
            head = b"\x17\x01" if burst % 20 == 0 else b"\x27\x01"
            session.send_frame(make_frame(FrameKind.VIDEO, ts, head + bytes(2 * VIDEO_BYTES - 2)))
            await publisher.send(session.data_to_send())
            await asyncio.sleep(0.01)
            # ...and a stray audio frame 10 ms later, far below the mark.
            session.send_frame(make_frame(FrameKind.AUDIO, ts + 80, audio))
            await publisher.send(session.data_to_send())
            sent += 2
            if burst in BURST_WINDOW:
                counts.append(sink.calls)
            await asyncio.sleep(max(0.0, t0 + (burst + 1) * BURST_S - time.monotonic()))
        await wait_for(lambda: len(sink.media()) >= sent - 2 * 20, 5, "the bursts")

        bursts = BURST_WINDOW[1] - BURST_WINDOW[0]
        reads = counts[1] - counts[0]
        print(f"reads over {bursts} bursts: {reads}")
        # A tick that fires before each next burst would make this ~2 reads per burst.
        assert reads <= 1.3 * bursts, f"{reads} reads for {bursts} bursts: the tick fires between bursts"
        got = sink.media()
        assert [ts for _, ts, _ in got] == sorted(ts for _, ts, _ in got), "frames reordered"
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        publisher.close()
        await origin.close()
