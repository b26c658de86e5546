"""Hub behaviour with synthetic frames (the hub is in-process: no sockets needed)."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from liverelay.config import MediaSettings
from liverelay.hub import Hub, Publication, SourceKind, StreamBusy, StreamKey, Subscriber
from liverelay.hub.stream import Stream
from liverelay.media.codecs import make_frame
from liverelay.media.frame import Frame, FrameKind

KEY = StreamKey("v", "live", "s")
META = b"\x02\x00\x0aonMetaData\x03\x00\x00\x09"


def vcfg(ts: int = 0, tag: bytes = b"A") -> Frame:
    return make_frame(FrameKind.VIDEO, ts, b"\x17\x00\x00\x00\x00avcC" + tag)


def key(ts: int, size: int = 100) -> Frame:
    return make_frame(FrameKind.VIDEO, ts, b"\x17\x01\x00\x00\x00" + bytes(size))


def inter(ts: int, size: int = 50) -> Frame:
    return make_frame(FrameKind.VIDEO, ts, b"\x27\x01\x00\x00\x00" + bytes(size))


def acfg(ts: int = 0, tag: bytes = b"\x12\x10") -> Frame:
    return make_frame(FrameKind.AUDIO, ts, b"\xaf\x00" + tag)


def aac(ts: int, size: int = 20) -> Frame:
    return make_frame(FrameKind.AUDIO, ts, b"\xaf\x01" + bytes(size))


def meta() -> Frame:
    return make_frame(FrameKind.DATA, 0, META)


def gop(start: int, frames: int = 10, step: int = 40) -> list[Frame]:
    """A keyframe, inter frames and interleaved audio, source timestamps from `start`."""
    out = [key(start), aac(start)]
    for i in range(1, frames):
        out += [inter(start + i * step), aac(start + i * step)]
    return out


def new_hub(**media: int | bool) -> Hub:
    return Hub(MediaSettings(**media))  # type: ignore[arg-type]


def drain(sub: Subscriber) -> list[Frame]:
    """Take what is queued without waiting."""
    frames = list(sub._queue)
    sub._queue.clear()
    sub._queued_bytes = 0
    return frames


async def take(sub: Subscriber) -> list[Frame]:
    """read() without waiting for the coalescing delay."""
    sub.flush()
    return await asyncio.wait_for(sub.read(), 1)


def check_monotonic(frames: list[Frame]) -> None:
    for kind in (FrameKind.AUDIO, FrameKind.VIDEO):
        stamps = [f.timestamp for f in frames if f.kind == kind]
        assert stamps == sorted(stamps), f"{kind.name} goes back: {stamps}"


async def test_joiner_gets_metadata_headers_and_gop_from_last_keyframe() -> None:
    hub = new_hub()
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER, owner="enc")
    for f in [meta(), vcfg(), acfg(), *gop(0), *gop(400)]:
        pub.write(f)
    sub = await hub.play(KEY, protocol="rtmp", remote="r", query="", timeout=1)
    assert sub is not None
    frames = await sub.read()
    assert frames[0].kind == FrameKind.DATA and frames[0].payload == META
    assert frames[1].config and frames[1].kind == FrameKind.VIDEO
    assert frames[2].config and frames[2].kind == FrameKind.AUDIO
    assert frames[3].keyframe and frames[3].timestamp == 400
    assert len(frames) == 3 + 20  # only the last GOP
    assert {f.timestamp for f in frames[:3]} == {400}  # headers restamped to the GOP start
    check_monotonic(frames)
    pub.write(inter(800))
    assert [f.timestamp for f in await sub.read()] == [800]


async def test_gop_cache_is_bounded_and_a_late_joiner_waits_for_the_next_keyframe() -> None:
    hub = new_hub(gop_max_ms=200)
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    for f in [meta(), vcfg(), acfg(), *gop(0, frames=10)]:  # 360 ms of GOP > 200 ms bound
        pub.write(f)
    stream = hub.get(KEY)
    assert stream is not None and len(stream.gop) == 0
    sub = await hub.play(KEY, protocol="rtmp", remote="r", timeout=1)
    assert sub is not None
    assert [f.kind for f in drain(sub)] == [FrameKind.DATA]
    pub.write(inter(400))
    pub.write(aac(400))
    assert drain(sub) == []
    pub.write(key(440))
    frames = drain(sub)
    assert [(f.kind, f.config, f.keyframe) for f in frames] == [
        (FrameKind.VIDEO, True, False),
        (FrameKind.AUDIO, True, False),
        (FrameKind.VIDEO, False, True),
    ]
    # The keyframe keeps its time; headers go no later (the audio one: not after the last audio sent).
    assert frames[2].timestamp == 440 and frames[0].timestamp == 440 and frames[1].timestamp == 400


async def test_gop_cache_byte_bound() -> None:
    hub = new_hub(gop_max_bytes=1000)
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    pub.write(vcfg())
    pub.write(key(0, size=600))
    stream = hub.get(KEY)
    assert stream is not None and len(stream.gop) == 1
    pub.write(inter(40, size=600))
    assert len(stream.gop) == 0 and stream.gop.nbytes == 0
    pub.write(key(80, size=10))
    assert len(stream.gop) == 1


async def test_audio_only_stream_keeps_a_short_window() -> None:
    hub = new_hub()
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    pub.write(acfg())
    for ts in range(0, 5000, 23):
        pub.write(aac(ts))
    sub = await hub.play(KEY, protocol="http-flv", remote="r", timeout=1)
    assert sub is not None
    frames = drain(sub)
    assert frames[0].config
    audio = frames[1:]
    assert 30 <= len(audio) <= 50  # ~1 s window
    assert audio[-1].timestamp - audio[0].timestamp <= 1000


async def test_leading_inter_frames_are_dropped_until_the_first_keyframe() -> None:
    hub = new_hub()
    pub = hub.publish(KEY, kind=SourceKind.RELAY_FIXED, owner="v4")
    sub = await hub.play(KEY, protocol="rtmp", remote="r", timeout=1)
    assert sub is not None
    for f in [vcfg(5000), acfg(5000), inter(5000), aac(5000), inter(5040), key(5080), inter(5120)]:
        pub.write(f)
    frames = drain(sub)
    coded_video = [f for f in frames if f.kind == FrameKind.VIDEO and not f.config]
    assert coded_video[0].keyframe and len(coded_video) == 2
    assert frames[0].timestamp == 0  # the stream timeline starts at 0


async def test_discontinuity_splices_at_keyframe_rebases_and_resends_headers() -> None:
    hub = new_hub()
    pub = hub.publish(KEY, kind=SourceKind.RELAY_PLAY, owner="origin-a")
    sub = await hub.play(KEY, protocol="rtmp", remote="r", timeout=1)
    assert sub is not None
    for f in [meta(), vcfg(tag=b"A"), acfg(), *gop(100_000), *gop(100_400)]:
        pub.write(f)
    before = drain(sub)
    last = max(f.timestamp for f in before)
    pub.discontinuity()
    # Origin B: its own timeline (starts at 7), new codec headers, starts mid-GOP.
    for f in [vcfg(7, tag=b"B"), acfg(7), inter(7), aac(7), inter(47), aac(47), *gop(87)]:
        pub.write(f)
    after = drain(sub)
    assert not sub.ended
    assert after[0].config and after[0].payload.endswith(b"B") and after[1].config
    assert after[2].keyframe
    splice_ts = after[2].timestamp
    assert last < splice_ts <= last + 100  # one frame duration (40 ms) after the last sent
    assert all(f.timestamp >= splice_ts for f in after[:3])
    check_monotonic(before + after)
    stream = hub.get(KEY)
    assert stream is not None and stream.splices == 1 and stream.video_header is not None
    assert stream.video_header.payload.endswith(b"B")


# A fixed relay (V4) takes over a play-triggered pull just as a publisher does, so a V4
# task never stays busy behind a V3 pull that happened to grab the stream first.
@pytest.mark.parametrize("taker", [SourceKind.PUBLISHER, SourceKind.RELAY_FIXED])
async def test_publisher_or_fixed_relay_takes_over_relay_play_and_viewers_continue(
    taker: SourceKind,
) -> None:
    hub = new_hub()
    relay = hub.publish(KEY, kind=SourceKind.RELAY_PLAY, owner="v3")
    preempted: list[bool] = []
    relay.on_preempted = lambda: preempted.append(True)
    sub = await hub.play(KEY, protocol="http-flv", remote="r", timeout=1)
    assert sub is not None
    for f in [vcfg(), acfg(), *gop(0)]:
        relay.write(f)
    before = drain(sub)
    publisher = hub.publish(KEY, kind=taker, owner="obs")
    assert preempted == [True] and not relay.active
    relay.write(key(5000))  # ignored: preempted
    assert drain(sub) == []
    for f in [vcfg(), acfg(), *gop(0)]:
        publisher.write(f)
    after = drain(sub)
    assert after and after[2].keyframe and after[2].timestamp > max(f.timestamp for f in before)
    check_monotonic(before + after)
    stream = hub.get(KEY)
    assert stream is not None and stream.source_kind is taker and stream.owner == "obs"
    relay.close("late close")  # a preempted publication's close must not end the viewers
    assert not sub.ended


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (SourceKind.PUBLISHER, SourceKind.PUBLISHER),
        (SourceKind.PUBLISHER, SourceKind.RELAY_PLAY),
        (SourceKind.PUBLISHER, SourceKind.RELAY_FIXED),
        (SourceKind.RELAY_FIXED, SourceKind.PUBLISHER),
        (SourceKind.RELAY_FIXED, SourceKind.RELAY_PLAY),
        (SourceKind.RELAY_PLAY, SourceKind.RELAY_PLAY),
    ],
)
def test_ownership_rules(first: SourceKind, second: SourceKind) -> None:
    hub = new_hub()
    pub = hub.publish(KEY, kind=first, owner="first")
    with pytest.raises(StreamBusy) as info:
        hub.publish(KEY, kind=second, owner="second")
    assert info.value.kind is first and info.value.owner == "first"
    assert pub.active
    pub.close()
    assert hub.publish(KEY, kind=second, owner="second").active  # free once closed


async def test_small_backward_steps_are_clamped_and_big_jumps_rebased() -> None:
    hub = new_hub()
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    sub = await hub.play(KEY, protocol="rtmp", remote="r", timeout=1)
    assert sub is not None
    for f in [vcfg(), key(0), inter(40), inter(30), inter(80), inter(50_000), inter(50_040), inter(10)]:
        pub.write(f)
    stamps = [f.timestamp for f in drain(sub) if not f.config]
    assert stamps[:4] == [0, 40, 40, 80]  # 30 after 40: clamped
    # +50 s jump: rebased about one frame duration after, then the source's own spacing.
    assert 80 < stamps[4] <= 180 and stamps[5] == stamps[4] + 40
    assert stamps[5] < stamps[6] <= stamps[5] + 100  # back to 10: rebased again
    stream = hub.get(KEY)
    assert stream is not None and stream.rebases == 2


async def test_overflowing_viewer_skips_to_next_keyframe_with_headers() -> None:
    hub = new_hub(viewer_queue_bytes=3000, viewer_max_skips=3)
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    for f in [vcfg(), acfg(), key(0)]:
        pub.write(f)
    slow = await hub.play(KEY, protocol="rtmp", remote="slow", timeout=1)
    fast = await hub.play(KEY, protocol="rtmp", remote="fast", timeout=1)
    assert slow is not None and fast is not None
    await slow.read()
    received: list[Frame] = list(await fast.read())
    for i in range(1, 60):  # 60 x 205 B > 3000 B: the slow one overflows
        pub.write(inter(i * 40, size=200))
        received += await take(fast)
    assert slow.skips == 1 and slow.queued_bytes == 0 and not slow.ended
    pub.write(inter(2400))
    assert drain(slow) == []
    pub.write(key(2440))
    frames = await take(slow)
    assert [(f.config, f.keyframe) for f in frames] == [(True, False), (True, False), (False, True)]
    received += await take(fast)
    assert len([f for f in received if not f.config]) == 1 + 59 + 2  # the fast viewer lost nothing
    assert hub.viewer_skips == 1


async def test_viewer_that_keeps_overflowing_is_dropped() -> None:
    hub = new_hub(viewer_queue_bytes=2000, viewer_max_skips=2)
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    pub.write(vcfg())
    sub = await hub.play(KEY, protocol="http-flv", remote="stuck", timeout=1)
    assert sub is not None
    dropped: list[bool] = []
    sub.on_drop = lambda: dropped.append(True)
    counts: list[int] = []
    stream = hub.get(KEY)
    assert stream is not None
    stream.add_viewer_listener(counts.append)
    ts = 0
    for _ in range(4):  # never reads: every GOP overflows its queue
        for f in [key(ts), *(inter(ts + 40 * i, size=300) for i in range(1, 10))]:
            pub.write(f)
        ts += 400
    assert sub.ended and sub.end_reason == "slow" and dropped == [True]
    assert await asyncio.wait_for(sub.read(), 1) == []
    assert stream.viewer_count == 0 and counts == [0]
    assert hub.viewer_drops == 1 and hub.viewer_skips == 3


async def test_a_viewer_that_reads_whole_gops_is_forgiven_its_skips() -> None:
    hub = new_hub(viewer_queue_bytes=2000, viewer_max_skips=1)
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    pub.write(vcfg())
    sub = await hub.play(KEY, protocol="rtmp", remote="bursty", timeout=1)
    assert sub is not None
    ts = 0
    for _ in range(5):
        for f in [key(ts), *(inter(ts + 40 * i, size=300) for i in range(1, 10))]:  # overflow once
            pub.write(f)
        ts += 400
        for f in [key(ts), inter(ts + 40), key(ts + 80), inter(ts + 120)]:  # then GOPs it reads in time
            pub.write(f)
            await take(sub)
        ts += 160
    assert sub.skips == 5 and not sub.ended


async def test_viewer_listener_counts_and_eof_on_close() -> None:
    hub = new_hub()
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    stream = hub.get(KEY)
    assert stream is not None
    counts: list[int] = []
    remove = stream.add_viewer_listener(counts.append)
    a = await hub.play(KEY, protocol="rtmp", remote="a", timeout=1)
    b = await hub.play(KEY, protocol="http-flv", remote="b", timeout=1)
    assert a is not None and b is not None
    assert hub.viewers_by_protocol() == {"rtmp": 1, "http-flv": 1}
    a.close()
    a.close()  # idempotent
    assert counts == [1, 2, 1] and stream.viewer_count == 1
    for f in [vcfg(), key(0)]:
        pub.write(f)
    pub.close("publisher left")
    assert len(await b.read()) == 2  # what was queued is still delivered ...
    assert await b.read() == []  # ... then EOF
    assert counts == [1, 2, 1, 0]
    assert hub.get(KEY) is None  # no source, no viewers: gone
    remove()
    assert await hub.play(KEY, protocol="rtmp", remote="c", timeout=1) is None


async def test_an_internal_reader_gets_frames_but_is_no_viewer() -> None:
    """The HLS muxer's reader (counted=False) is fanned out to and gets EOF, but no viewer
    count, per-protocol count, metric or viewer listener (the V3 linger) sees it."""
    registry = CollectorRegistry()
    hub = Hub(MediaSettings(), metrics=registry)
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    stream = hub.get(KEY)
    assert stream is not None
    counts: list[int] = []
    stream.add_viewer_listener(counts.append)
    internal = stream.subscribe(protocol="hls-muxer", remote="hls", query="", counted=False)
    assert stream.viewer_count == 0 and counts == [] and hub.viewers_by_protocol() == {}
    viewer = await hub.play(KEY, protocol="hls", remote="a", timeout=1)
    assert viewer is not None
    assert stream.viewer_count == 1 and counts == [1] and stream.stats()["viewers"] == 1
    assert hub.viewers_by_protocol() == {"hls": 1}
    text = generate_latest(registry).decode()
    assert 'liverelay_viewers{protocol="hls"} 1.0' in text and "hls-muxer" not in text
    viewer.close()  # the last viewer left while the internal reader still reads: linger starts
    assert counts == [1, 0] and stream.viewer_count == 0
    assert hub.get(KEY) is stream  # the source is still there
    for f in [vcfg(), key(0)]:
        pub.write(f)
    assert [f.timestamp for f in await take(internal)] == [0, 0]
    pub.close("publisher left")
    assert await internal.read() == []  # EOF like any reader
    assert counts == [1, 0, 0] and hub.viewers_by_protocol() == {"hls": 0}
    assert hub.get(KEY) is None


async def test_play_trigger_success_registers_the_viewer_first() -> None:
    hub = new_hub()
    seen: list[int] = []

    async def trigger(k: StreamKey, query: str) -> bool:
        stream = hub.get(k)
        assert stream is not None
        seen.append(stream.viewer_count)
        assert query == "token=abc"
        await asyncio.sleep(0.05)  # the pull connects ...
        pub = hub.publish(k, kind=SourceKind.RELAY_PLAY, owner="v3")
        for f in [vcfg(), acfg(), key(1000)]:
            pub.write(f)
        return True

    hub.play_trigger = trigger
    sub = await hub.play(KEY, protocol="http-flv", remote="r", query="token=abc", timeout=2)
    assert sub is not None and seen == [1]
    frames = await asyncio.wait_for(sub.read(), 1)
    assert [(f.config, f.keyframe) for f in frames] == [(True, False), (True, False), (False, True)]


@pytest.mark.parametrize("outcome", ["false", "timeout", "error"])
async def test_play_trigger_failure_returns_none_and_unregisters(outcome: str) -> None:
    hub = new_hub()
    counts: list[int] = []

    async def trigger(k: StreamKey, query: str) -> bool:
        stream = hub.get(k)
        assert stream is not None
        stream.add_viewer_listener(counts.append)
        if outcome == "timeout":
            await asyncio.sleep(30)
        if outcome == "error":
            raise RuntimeError("origin table broken")
        return False

    hub.play_trigger = trigger
    started = time.monotonic()
    assert await hub.play(KEY, protocol="rtmp", remote="r", timeout=0.2) is None
    assert time.monotonic() - started < 1.0
    assert counts == [0] and hub.get(KEY) is None


async def test_play_without_source_and_trigger_is_none_at_once() -> None:
    hub = new_hub()
    assert await hub.play(KEY, protocol="rtmp", remote="r", timeout=5) is None
    assert hub.get(KEY) is None


async def test_hub_close_ends_everything() -> None:
    hub = new_hub()
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    sub = await hub.play(KEY, protocol="rtmp", remote="r", timeout=1)
    assert sub is not None
    reader = asyncio.create_task(sub.read())
    await asyncio.sleep(0)
    await hub.close()
    assert await asyncio.wait_for(reader, 1) == []
    assert not pub.active and hub.streams() == []
    with pytest.raises(StreamBusy):
        hub.publish(KEY, kind=SourceKind.PUBLISHER)


async def test_stats_and_metrics() -> None:
    registry = CollectorRegistry()
    hub = Hub(MediaSettings(), metrics=registry)
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER, owner="enc")
    sub = await hub.play(KEY, protocol="http-flv", remote="r", timeout=1)
    assert sub is not None
    for f in [vcfg(), *gop(0)]:
        pub.write(f)
    sub.add_bytes_out(1234)
    stream = hub.get(KEY)
    assert stream is not None
    stats = stream.stats()
    assert stats["bytes_in"] == sum(len(f.payload) for f in [vcfg(), *gop(0)])
    assert stats["bytes_out"] == 1234 and stats["frames_in"] == 21 and stats["viewers"] == 1
    assert stats["source_kind"] == "publisher" and stats["owner"] == "enc"
    text = generate_latest(registry).decode()
    assert "liverelay_streams 1.0" in text
    assert 'liverelay_viewers{protocol="http-flv"} 1.0' in text
    assert f"liverelay_bytes_in_total {float(stats['bytes_in'])}" in text
    assert "liverelay_bytes_out_total 1234.0" in text
    assert "liverelay_viewer_skips_total 0.0" in text and "liverelay_viewer_drops_total 0.0" in text
    pub.close()
    sub.close()
    text = generate_latest(registry).decode()
    assert "liverelay_streams 0.0" in text and "liverelay_bytes_out_total 1234.0" in text  # totals survive


async def test_bitrate_over_a_sliding_window(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("liverelay.hub.stream.time.monotonic", lambda: now[0])
    hub = new_hub()
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    stream = hub.get(KEY)
    assert stream is not None
    for second in range(10):
        now[0] = 1000.0 + second
        for i in range(10):
            pub.write(aac(second * 1000 + i * 100, size=998))  # 10 kB per second
    now[0] = 1010.0
    assert stream.bitrate() == pytest.approx(80_000)
    now[0] = 1030.0
    assert stream.bitrate() == 0


# -- property: whatever the source does, each viewer's timeline only moves forward --

_events = st.lists(
    st.one_of(
        st.tuples(st.just("key"), st.integers(-5000, 10**7)),
        st.tuples(st.just("inter"), st.integers(-5000, 10**7)),
        st.tuples(st.just("audio"), st.integers(-5000, 10**7)),
        st.tuples(st.just("step"), st.integers(-200, 200)),
        st.tuples(st.just("cfg"), st.integers(0, 3)),
        st.tuples(st.just("disc"), st.just(0)),
        st.tuples(st.just("join"), st.just(0)),
    ),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(_events)
def test_property_viewer_timelines_are_monotonic_and_start_at_keyframes(
    events: list[tuple[str, int]],
) -> None:
    hub = new_hub(viewer_queue_bytes=1 << 30)
    pub = hub.publish(KEY, kind=SourceKind.RELAY_FIXED)
    stream = hub.get(KEY)
    assert stream is not None
    viewers: list[tuple[Subscriber, list[Frame]]] = []
    ts = 0

    def join() -> None:
        sub = stream.subscribe(protocol="rtmp", remote="p", query="")
        viewers.append((sub, []))

    join()
    for op, value in events:
        if op == "step":
            ts = max(0, ts + value)
            pub.write(inter(ts) if value % 2 else aac(ts))
        elif op == "key":
            ts = max(0, value)
            pub.write(key(ts))
        elif op == "inter":
            pub.write(inter(max(0, value)))
        elif op == "audio":
            pub.write(aac(max(0, value)))
        elif op == "cfg":
            pub.write(vcfg(ts, tag=bytes([value])) if value % 2 else acfg(ts))
        elif op == "disc":
            pub.discontinuity()
        elif op == "join":
            join()
        for sub, got in viewers:
            got.extend(drain(sub))
    for _sub, got in viewers:
        stamps = [f.timestamp for f in got]
        assert all(s >= 0 for s in stamps)
        check_monotonic(got)
        coded = [f for f in got if f.kind == FrameKind.VIDEO and not f.config]
        if coded:
            assert coded[0].keyframe


async def flv_viewer_past(headers: list[Frame], hub: Hub | None = None) -> tuple[Publication, Subscriber]:
    """A publisher that has written `headers` and an HTTP-FLV viewer that has already read them,
    so the viewer's next read holds only what the test writes next."""
    hub = hub or new_hub()
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    for f in headers:
        pub.write(f)
    sub = await hub.play(KEY, protocol="http-flv", remote="r", timeout=1)
    assert sub is not None
    await sub.read()
    return pub, sub


async def test_audio_rides_along_with_the_next_video_frame() -> None:
    pub, sub = await flv_viewer_past([vcfg(), acfg(), key(0)])
    pub.write(aac(10))
    pub.write(aac(33))
    reader = asyncio.create_task(sub.read())
    await asyncio.sleep(0.02)
    assert not reader.done()  # audio alone does not wake the writer ...
    pub.write(inter(40))
    batch = await asyncio.wait_for(reader, 1)  # ... the next video frame takes it along
    assert [f.timestamp for f in batch] == [10, 33, 40]
    pub.close()
    assert await sub.read() == []


async def test_audio_only_stream_wakes_on_every_frame() -> None:
    pub, sub = await flv_viewer_past([acfg()])
    pub.write(aac(23))
    assert [f.timestamp for f in await asyncio.wait_for(sub.read(), 1)] == [23]


async def test_writers_are_woken_once_per_coalescing_window_of_media() -> None:
    pub, sub = await flv_viewer_past([vcfg(), acfg(), key(0)])
    batches: list[list[int]] = []
    for ts in range(33, 400, 33):  # 30 fps, each frame in its own loop iteration
        pub.write(inter(ts))
        await asyncio.sleep(0)
        if sub._ready.is_set():
            batches.append([f.timestamp for f in await sub.read()])
    # A wake-up about every 50 ms of media (every second frame), never one per frame.
    assert batches[:3] == [[33, 66], [99, 132], [165, 198]]


async def test_held_frames_are_flushed_when_the_source_pauses() -> None:
    pub, sub = await flv_viewer_past([vcfg(), key(0)])
    pub.write(inter(10))  # under the coalescing window: held ...
    started = time.monotonic()
    assert [f.timestamp for f in await asyncio.wait_for(sub.read(), 1)] == [10]
    assert time.monotonic() - started < 0.5  # ... until the idle flush


async def test_set_metadata_is_kept_and_sent_first_to_joiners() -> None:
    hub = new_hub()
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    pub.set_metadata(b"\x08\x00\x00\x00\x00\x00\x00\x09")  # any AMF0 body counts as metadata here
    for f in [vcfg(), key(0)]:
        pub.write(f)
    stream = hub.get(KEY)
    assert stream is not None and stream.metadata == b"\x08\x00\x00\x00\x00\x00\x00\x09"
    sub = await hub.play(KEY, protocol="rtmp", remote="r", timeout=1)
    assert sub is not None
    frames = await take(sub)
    assert frames[0].kind == FrameKind.DATA and frames[0].payload == stream.metadata


async def test_a_codec_header_stamped_zero_mid_stream_does_not_move_the_timeline() -> None:
    hub = new_hub()
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    sub = await hub.play(KEY, protocol="rtmp", remote="r", timeout=1)
    assert sub is not None
    for f in [vcfg(), key(0), *(inter(ts) for ts in range(40, 10_000, 40)), vcfg(0, tag=b"new"), key(10_000)]:
        pub.write(f)
    frames = drain(sub)
    assert frames[-2].config and frames[-2].timestamp == 9960
    assert frames[-1].keyframe and frames[-1].timestamp == 10_000
    stream = hub.get(KEY)
    assert stream is not None and stream.rebases == 0


async def test_flush_interval_zero_wakes_on_every_frame() -> None:
    pub, sub = await flv_viewer_past([vcfg(), acfg(), key(0)], new_hub(viewer_flush_ms=0))
    for f in [inter(33), aac(40), inter(66)]:
        pub.write(f)
        assert sub._ready.is_set()
        assert [x.timestamp for x in await sub.read()] == [f.timestamp]


async def test_a_keyframe_wakes_the_writer_at_once() -> None:
    hub = new_hub()
    pub = hub.publish(KEY, kind=SourceKind.RELAY_PLAY)
    sub = await hub.play(KEY, protocol="http-flv", remote="r", timeout=1)
    assert sub is not None
    for f in [vcfg(), acfg()]:
        pub.write(f)
    await sub.read()
    pub.write(aac(0))
    pub.write(key(10))  # within the coalescing window of the headers, still not held
    assert sub._ready.is_set()
    assert [f.timestamp for f in await sub.read()] == [0, 10]


async def test_push_mode_waker_replaces_read_and_is_told_about_the_end() -> None:
    hub = new_hub()
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    for f in [vcfg(), acfg(), key(0)]:
        pub.write(f)
    good = await hub.play(KEY, protocol="http-flv", remote="good", timeout=1)
    bad = await hub.play(KEY, protocol="http-flv", remote="bad", timeout=1)
    assert good is not None and bad is not None
    assert len(good.take()) == 3 and good.take() == []
    bad.take()
    sent: list[list[int]] = []
    good.set_waker(lambda: sent.append([f.timestamp for f in good.take()]))

    def broken() -> None:
        raise RuntimeError("sink bug")

    bad.set_waker(broken)
    for ts in (33, 66, 99, 132):
        pub.write(inter(ts))
    assert sent == [[33, 66], [99, 132]]  # same coalescing as read(), no task involved
    pub.close("done")
    assert sent[-1] == [] and good.ended and good.end_reason == "eof"  # woken once more: the end


_viewer_ops = st.lists(
    st.one_of(
        st.tuples(st.just("key"), st.integers(10, 900)),
        st.tuples(st.just("inter"), st.integers(10, 900)),
        st.tuples(st.just("audio"), st.integers(10, 300)),
        st.tuples(st.just("take"), st.integers(0, 1)),
    ),
    max_size=150,
)


@settings(max_examples=200, deadline=None)
@given(_viewer_ops)
def test_property_bounded_queue_and_skips_resume_at_keyframes(ops: list[tuple[str, int]]) -> None:
    hub = new_hub(viewer_queue_bytes=2000, viewer_max_skips=10_000)
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    pub.write(vcfg())
    pub.write(acfg())
    pub.write(key(0))
    stream = hub.get(KEY)
    assert stream is not None
    sub = stream.subscribe(protocol="rtmp", remote="p", query="")
    received: list[Frame] = list(sub.take())
    skips_seen = 0
    ts = 0
    for op, value in ops:
        ts += 20
        if op == "key":
            pub.write(key(ts, size=value))
        elif op == "inter":
            pub.write(inter(ts, size=value))
        elif op == "audio":
            pub.write(aac(ts, size=value))
        elif op == "take":
            batch = sub.take()
            if sub.skips != skips_seen:  # it skipped since the last take: resumes at headers + keyframe
                skips_seen = sub.skips
                video = [f for f in batch if f.kind == FrameKind.VIDEO]
                if video:
                    assert video[0].config and video[1].keyframe
            received += batch
        assert sub.queued_bytes <= 2000  # crossing the bound clears the queue (skip)
    check_monotonic(received)


async def test_headers_of_an_origin_that_never_reached_a_keyframe_are_not_used() -> None:
    hub = new_hub()
    pub = hub.publish(KEY, kind=SourceKind.RELAY_FIXED, owner="v4")
    sub = await hub.play(KEY, protocol="rtmp", remote="r", timeout=1)
    assert sub is not None
    for f in [vcfg(tag=b"A"), acfg(tag=b"A"), *gop(0)]:
        pub.write(f)
    drain(sub)
    pub.discontinuity()
    for f in [vcfg(tag=b"B"), acfg(tag=b"B"), inter(5)]:  # origin B dies mid-GOP
        pub.write(f)
    pub.discontinuity()
    for f in [vcfg(tag=b"C"), key(0)]:  # origin C sends no audio header
        pub.write(f)
    frames = drain(sub)
    assert [f.payload[-1:] for f in frames if f.config] == [b"C", b"A"]  # A's audio header is still valid
    assert frames[-1].keyframe


class _StepWriter:
    """A sink in push mode with a batch writer whose socket can back up (paused)."""

    def __init__(self, sub: Subscriber) -> None:
        self.sub = sub
        self.got: list[Frame] = []
        self.batches: list[list[Frame]] = []
        self.paused = False
        sub.set_waker(self.wake, self.deliver)

    def wake(self) -> None:
        if not self.paused:
            self.got += self.sub.take()

    def deliver(self, batch: list[Frame]) -> bool:
        if self.paused:
            return False
        self.batches.append(batch)
        self.got += batch
        return True


_step_ops = st.lists(
    st.one_of(
        st.tuples(st.just("key"), st.integers(0, 2)),
        st.tuples(st.just("inter"), st.integers(0, 2)),
        st.tuples(st.just("audio"), st.integers(0, 2)),
        st.tuples(st.just("pause"), st.integers(0, 2)),
        st.tuples(st.just("resume"), st.integers(0, 2)),
        st.tuples(st.just("idle"), st.integers(0, 2)),
    ),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(_step_ops)
def test_property_viewers_in_step_get_every_frame_once_in_order(ops: list[tuple[str, int]]) -> None:
    hub = new_hub(viewer_queue_bytes=1 << 30)
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    for f in (vcfg(), acfg(), key(0)):
        pub.write(f)
    stream = hub.get(KEY)
    assert stream is not None
    reference = stream.subscribe(protocol="rtmp", remote="ref", query="")  # pull mode: own queue
    writers = [_StepWriter(stream.subscribe(protocol="rtmp", remote=f"v{i}", query="")) for i in range(3)]
    for w in writers:
        w.wake()  # the join burst, as PushWriter.run does first
    expected = reference.take()
    ts = 0
    for op, i in ops:
        ts += 15
        if op == "key":
            pub.write(key(ts))
        elif op == "inter":
            pub.write(inter(ts))
        elif op == "audio":
            pub.write(aac(ts))
        elif op == "pause":
            writers[i].paused = True
        elif op == "resume":
            writers[i].paused = False
            writers[i].wake()
        elif op == "idle":
            stream._flush_all()  # what the idle timer does when the source pauses
        expected += reference.take()
    for w in writers:
        w.paused = False
    pub.close("done")
    expected += reference.take()
    for w in writers:
        w.wake()  # woken at the end: what is left in its own queue
        # (the join burst's headers are restamped copies per viewer: compare by value)
        assert [(f.kind, f.timestamp, f.payload) for f in w.got] == [
            (f.kind, f.timestamp, f.payload) for f in expected
        ]
        assert w.sub.ended
    # Viewers that stayed in step were handed the very same batch lists.
    shared = [b for b in writers[0].batches if any(b is c for c in writers[1].batches)]
    if not any(op in ("pause",) for op, _ in ops) and len(writers[0].batches) > 1:
        assert shared


def _in_step(
    hub: Hub, *, protocol: str = "rtmp", frames: tuple[int, ...] = (66,)
) -> tuple[Publication, Stream, list[_StepWriter]]:
    """A publisher past its headers and keyframe, and two viewers that have caught up;
    then inter frames at `frames`: the first flush puts the viewers in step."""
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER)
    for f in (vcfg(), acfg(), key(0)):
        pub.write(f)
    stream = hub.get(KEY)
    assert stream is not None
    writers = [_StepWriter(stream.subscribe(protocol=protocol, remote=f"v{i}", query="")) for i in range(2)]
    for w in writers:
        w.wake()
    for ts in frames:
        pub.write(inter(ts))
    return pub, stream, writers


async def test_viewers_in_step_cost_nothing_per_frame_and_share_one_batch() -> None:
    pub, stream, writers = _in_step(new_hub(), protocol="http-flv", frames=(33, 66, 99, 132))
    assert stream._step_to and not stream._individual
    pub.write(key(140))  # a keyframe flushes at once: the next window starts here
    before = [len(w.batches) for w in writers]
    for ts in (150, 170):
        pub.write(inter(ts))
    assert [len(w.batches) for w in writers] == before  # held: within the flush window (50 ms)
    pub.write(key(264))  # a keyframe flushes at once
    assert writers[0].batches[-1] is writers[1].batches[-1]
    assert [f.timestamp for f in writers[0].batches[-1]][-1] == 264
    # A backed-up viewer leaves the step and gets its own bounded queue.
    writers[1].paused = True
    pub.write(key(300))
    assert writers[1].sub.queued_frames == 1 and len(stream._step_to) == 1
    writers[1].paused = False
    writers[1].wake()
    pub.write(key(333))  # the next flush lets it back in step
    assert len(stream._step_to) == 2
    assert [f.timestamp for f in writers[1].got] == [f.timestamp for f in writers[0].got]


async def test_a_flowing_stream_arms_no_idle_flush_timer_between_flushes() -> None:
    # The idle flush is for a source that pauses. Armed by the first frame held after a
    # flush and cancelled by the next flush, it never fires (never wakes the loop) while
    # media flows; before, it was re-armed after every frame and fired every ~50 ms.
    pub, stream, writers = _in_step(new_hub())  # 66 is past the flush window: flushed
    assert len(stream._step_to) == 2 and not stream._individual
    assert stream._idle_flush is None  # that frame was flushed: nothing is held
    pub.write(aac(70))  # audio waits for the next video frame ...
    timer = stream._idle_flush
    assert timer is not None  # ... so the idle flush is armed
    pub.write(inter(99))  # held too (under the 50 ms window): the same timer stays
    assert stream._idle_flush is timer
    pub.write(inter(132))  # the window is full: flushed, and the timer is gone with it
    assert stream._idle_flush is None and timer.cancelled()
    assert [f.timestamp for f in writers[0].batches[-1]] == [70, 99, 132]


async def test_held_frames_of_viewers_in_step_are_flushed_when_the_source_pauses() -> None:
    pub, stream, writers = _in_step(new_hub())
    assert len(stream._step_to) == 2
    before = len(writers[0].batches)
    pub.write(aac(70))  # held for the next video frame, which does not come
    for _ in range(200):  # the idle flush (2 x 50 ms) sends it; bounded wait on the event
        if len(writers[0].batches) > before:
            break
        await asyncio.sleep(0.01)
    assert [f.timestamp for f in writers[0].batches[-1]] == [70]
    assert writers[1].batches[-1] is writers[0].batches[-1]


async def test_a_run_of_frames_is_counted_once_and_restamped_in_place() -> None:
    # Publication.write_run (a relay pull: the frames of one read) hands the frames over:
    # they reach viewers as the same objects, restamped onto the stream's timeline,
    # unless one was serialised already (then it is copied, the cached bytes stay true).
    hub = new_hub()
    pub = hub.publish(KEY, kind=SourceKind.RELAY_PLAY, owner="pull")
    headers = [vcfg(5000), acfg(5000)]
    pub.write_run(headers)
    stream = hub.get(KEY)
    assert stream is not None
    run = [key(5000), aac(5010), inter(5033), aac(5033)]
    shared = run[3]
    shared.cache["flv"] = b"serialised at 5033"
    pub.write_run(run)
    assert stream.frames_in == 6
    assert stream.bytes_in == sum(len(f.payload) for f in headers + run)
    assert [f.timestamp for f in run[:3]] == [0, 10, 33]  # restamped in place
    assert shared.timestamp == 5033  # serialised: left as it was ...
    sub = stream.subscribe(protocol="rtmp", remote="v", query="")
    joined = drain(sub)
    assert next(f for f in joined if f.kind == FrameKind.VIDEO and not f.config) is run[0]
    assert [f.timestamp for f in joined if f.kind == FrameKind.AUDIO and not f.config] == [10, 33]
    assert not any(f is shared for f in joined)  # ... and a restamped copy went out instead


async def test_with_a_reader_of_its_own_a_flowing_stream_gets_no_extra_flush() -> None:
    # A pull-mode reader (the HLS muxer) keeps the idle timer armed across flushes; when it
    # fires shortly after a flush, the stream is flowing: it waits for the rest of its
    # interval instead of flushing the batch early (an extra write to every viewer).
    hub = new_hub()
    pub, stream, writers = _in_step(hub)
    reader = stream.subscribe(protocol="hls", remote="muxer", query="", counted=False)
    pub.write(inter(132))  # flushed: the batch is empty, the reader holds its own queue
    pub.write(aac(140))  # held in the batch
    before = len(writers[0].batches)
    stream._on_idle_flush()  # what the timer does, a moment after the last flush
    assert len(writers[0].batches) == before  # not flushed early ...
    assert stream._idle_flush is not None  # ... but still watched
    stream._last_flush -= 1.0  # no flush for a second: the source paused
    stream._on_idle_flush()
    assert [f.timestamp for f in writers[0].batches[-1]] == [140]
    assert [f.timestamp for f in reader.take()][-2:] == [132, 140]


async def test_a_coalesced_read_goes_to_viewers_in_one_flush_at_its_end() -> None:
    # A run spanning half a flush interval or more (a coalesced pull read, ~40-80 ms of
    # media) goes out in one flush at its end, the frames after the rule's flush point
    # included, and leaves no idle-flush timer; a run of one frame is held by the rule.
    pub, stream, writers = _in_step(new_hub())  # flushed up to 66: the next point is 116
    before = len(writers[0].batches)
    pub.write_run([inter(99), aac(100), inter(132), aac(140), inter(165)])  # 132 passes it
    assert len(writers[0].batches) == before + 1
    assert [f.timestamp for f in writers[0].batches[-1]] == [99, 100, 132, 140, 165]
    assert writers[1].batches[-1] is writers[0].batches[-1]
    assert stream._idle_flush is None
    pub.write_run([inter(198)])  # one frame, before the next point (215): held
    assert len(writers[0].batches) == before + 1
    assert stream._idle_flush is not None
