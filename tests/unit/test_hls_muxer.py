"""Where an HLS muxer's variants start: on the stream's current GOP, never on the next one.

The muxer joins the hub with the GOP cache as its join burst. The variant a request asks for
is made after that burst was taken, so the muxer keeps the frames since the last keyframe and
a new variant starts on them: the first classic viewer gets the GOP the stream already has,
and an LL-HLS viewer coming after classic ones gets the current GOP too. (A muxer that fed the
join burst to no variant lost a whole GOP: one segment less for every viewer of the stream.)
In-process hub, real H.264/AAC payloads from the FLV fixture: no sockets needed."""

from __future__ import annotations

import time

from tests.unit.hls_frames import live_stream

from liverelay.config import MediaSettings
from liverelay.hub import Hub, SourceKind, StreamKey
from liverelay.media.frame import Frame, FrameKind
from liverelay.media.hls.segmenter import Container
from liverelay.servers.hls import HlsService

KEY = StreamKey("v", "live", "s")


def _keyframes(frames: list[Frame]) -> list[int]:
    return [f.timestamp for f in frames if f.kind is FrameKind.VIDEO and f.keyframe and not f.config]


async def test_a_new_muxer_starts_on_the_gop_the_stream_already_has() -> None:
    hub = Hub(MediaSettings(viewer_flush_ms=0))
    service = HlsService(hub, MediaSettings(), start_timeout_s=5)
    frames = live_stream(9, gop_s=2.0)
    assert _keyframes(frames)[:3] == [0, 2000, 4000]
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    before = [f for f in frames if f.timestamp < 1500]  # the GOP cache holds keyframe 0
    for frame in before:
        pub.write(frame)
    joined = time.time()
    muxer = await service.muxer(KEY, "viewer")
    ts = muxer.variant(Container.TS)  # what the first playlist request asks for
    for frame in frames[len(before) :]:
        pub.write(frame)
    seg = ts.segmenter
    assert [s.start_ms for s in seg.segments][:2] == [0, 2000], [s.start_ms for s in seg.segments]
    # The GOP reached the node before the join (1.47 s of it): the first segment is dated so,
    # or its PROGRAM-DATE-TIME would overlap the next segment's.
    assert seg.segments[0].wall_clock <= joined - 1.4, (seg.segments[0].wall_clock, joined)

    # An LL-HLS variant added mid-GOP (9 s of stream so far) starts on its keyframe (8 s).
    assert muxer.variants.get(Container.FMP4) is None
    ll = muxer.variant(Container.FMP4)
    more = live_stream(3, gop_s=2.0, start_ms=9000)
    for frame in more:
        if not frame.config:
            pub.write(frame)
    pub.close("done")
    assert muxer.ended
    starts = [s.start_ms for s in ll.segmenter.segments]
    assert starts and starts[0] == 8000, starts
    await service.close()


async def test_a_variant_stays_while_a_session_plays_it_and_a_new_one_continues_its_numbers() -> None:
    """A player may wait longer than `hls_linger_s` between reloads (a short linger, a slow
    player): its variant must not be dropped under it. Dropped and made again on its next
    reload, the variant started over at segment 0 of the same muxer generation: the player's
    playlist went back in time and the URIs named other segments (ffprobe stopped reading)."""
    settings = MediaSettings(hls_linger_s=2.0, hls_session_timeout_s=3.0)
    hub = Hub(MediaSettings(viewer_flush_ms=0))
    service = HlsService(hub, settings, start_timeout_s=5)
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    frames = live_stream(12, gop_s=2.0)
    for frame in frames[: len(frames) // 2]:
        pub.write(frame)
    session = await service.session(KEY, None, "player", "")
    muxer = service.muxers[KEY]
    ts = muxer.variant(Container.TS)
    session.container = Container.TS  # what its playlist request records
    for frame in frames[len(frames) // 2 :]:
        pub.write(frame)
    assert len(ts.segmenter.segments) >= 2
    now = time.monotonic()
    session.last_seen = now  # fetched just now; its variant 2.5 s ago
    ts.last_fetch = now - 2.5
    service.sweep(now)
    assert muxer.variants.get(Container.TS) is ts

    # Nobody plays it any more (the session switched to LL-HLS): it goes after the linger,
    # and made again it continues the sequence numbers of the old one.
    session.container = Container.FMP4
    service.sweep(now)
    assert Container.TS not in muxer.variants
    last = ts.segmenter.next_msn
    again = muxer.variant(Container.TS)
    more = live_stream(5, gop_s=2.0, start_ms=12000)
    for frame in more:
        if not frame.config:
            pub.write(frame)
    msns = [s.msn for s in again.segmenter.segments]
    assert msns and msns[0] == last, (msns, last)

    # LL-HLS likewise, init segments included (EXT-X-MAP URIs are per muxer generation too).
    ll = muxer.variant(Container.FMP4)
    for frame in live_stream(5, gop_s=2.0, start_ms=17000):
        if not frame.config:
            pub.write(frame)
    assert ll.segmenter.segments
    old_inits = {seg.init_id for seg in ll.segmenter.segments}
    session.container = Container.TS
    ll.last_fetch = time.monotonic() - 2.5
    service.sweep(time.monotonic())
    assert Container.FMP4 not in muxer.variants
    last_ll, next_init = ll.segmenter.next_msn, ll.segmenter.next_init_id
    ll_again = muxer.variant(Container.FMP4)
    for frame in live_stream(5, gop_s=2.0, start_ms=22000):
        if not frame.config:
            pub.write(frame)
    first = ll_again.segmenter.segments[0]
    assert first.msn == last_ll, (first, last_ll)
    assert first.init_id >= next_init > max(old_inits), (first, next_init, old_inits)
    assert ll_again.segmenter.init_data(first.init_id) is not None
    pub.close("done")
    await service.close()
