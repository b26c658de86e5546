"""HLS segmenter: start, cuts at keyframes, LL-HLS parts, window bounds, discontinuities."""

from __future__ import annotations

from hls_frames import WALL0, live_stream, wall

from liverelay.media.frame import Frame, FrameKind
from liverelay.media.hls.segmenter import Container, HlsSegmenter, Published, SegmenterConfig
from liverelay.media.mpegts import PACKET_SIZE


def run(seg: HlsSegmenter, frames: list[Frame], lag_s: float = 0.0) -> list[Published]:
    events: list[Published] = []
    for f in frames:
        events += seg.push(f, wall(f, lag_s))
    return events


def test_nothing_before_configs_and_keyframe_then_first_segment_starts_on_it() -> None:
    frames = live_stream(3.0, gop_s=1.0)
    seg = HlsSegmenter(SegmenterConfig(Container.TS, target_duration_ms=1000), video=True, audio=True)
    # Media without the headers first: dropped, nothing starts.
    media = [f for f in frames if not f.config]
    assert run(seg, media[:5]) == [] and not seg.started
    assert seg.dropped_frames == 5
    # Audio only after the headers still waits for a video keyframe.
    seg = HlsSegmenter(SegmenterConfig(Container.TS, target_duration_ms=1000), video=True, audio=True)
    run(seg, frames)
    first = seg.segments[0]
    assert first.start_ms == 0 and first.independent
    assert first.wall_clock == WALL0
    assert first.data[:1] == b"\x47" and len(first.data) % PACKET_SIZE == 0


def test_segments_cut_at_keyframes_at_the_target_duration() -> None:
    frames = live_stream(10.0, gop_s=1.0)
    seg = HlsSegmenter(SegmenterConfig(Container.TS, target_duration_ms=2000), video=True, audio=True)
    events = run(seg, frames)
    assert [e for e in events if e.part is None] == [Published(i, None) for i in range(4)]
    assert [s.duration_ms for s in seg.segments] == [2000] * 4
    assert [s.start_ms for s in seg.segments] == [0, 2000, 4000, 6000]
    assert all(s.independent and not s.discontinuity for s in seg.segments)
    assert seg.target_duration_s == 2
    assert [s.wall_clock for s in seg.segments] == [WALL0 + i * 2 for i in range(4)]


def test_auto_target_follows_the_first_gop() -> None:
    frames = live_stream(13.0, gop_s=3.0)
    seg = HlsSegmenter(SegmenterConfig(Container.TS), video=True, audio=True)
    run(seg, frames)
    assert [s.duration_ms for s in seg.segments] == [3000] * 4
    assert seg.target_duration_s == 3


def test_ll_parts_bounded_by_the_part_target_and_concatenate_to_the_segment() -> None:
    frames = live_stream(10.0, gop_s=2.0)
    cfg = SegmenterConfig(Container.FMP4, target_duration_ms=2000, part_target_ms=333, part_segments=10)
    seg = HlsSegmenter(cfg, video=True, audio=True)
    events = run(seg, frames)
    assert len(seg.segments) == 4
    for s in seg.segments:
        assert s.data == b"".join(p.data for p in s.parts)
        assert sum(p.duration_ms for p in s.parts) == s.duration_ms
        assert [p.independent for p in s.parts] == [True] + [False] * (len(s.parts) - 1)
        for p in s.parts:
            assert p.duration_ms <= 333
        for p in s.parts[:-1]:
            assert p.duration_ms >= 0.85 * 333  # only a segment's last part may be shorter
        assert s.data.startswith(b"\x00\x00") and s.data[4:8] == b"moof"
    # Every part is announced before its segment.
    parts_of_1 = [e for e in events if e.msn == 1]
    assert parts_of_1[-1] == Published(1, None)
    assert [e.part for e in parts_of_1[:-1]] == list(range(len(seg.segments[1].parts)))
    assert seg.init_data(seg.segments[0].init_id)[4:8] == b"ftyp"  # type: ignore[index]


def test_window_and_memory_stay_bounded_and_media_sequence_is_monotonic() -> None:
    cfg = SegmenterConfig(
        Container.FMP4, target_duration_ms=1000, window_segments=4, retain_segments=2, part_segments=2
    )
    seg = HlsSegmenter(cfg, video=True, audio=True)
    sizes = []
    seqs = []
    for f in live_stream(60.0, gop_s=1.0):
        seg.push(f, wall(f))
        if f.keyframe:
            sizes.append(seg.bytes_held)
            seqs.append(seg.media_sequence)
    assert len(seg.segments) == 6 and len(seg.listed) == 4
    assert seg.segments[-1].msn == 58 and seg.media_sequence == 55
    assert seqs == sorted(seqs)
    assert [bool(s.parts) for s in seg.segments] == [False] * 4 + [True] * 2
    # Memory settles: the last 20 s hold no more than the 20 s before them.
    assert max(sizes[-20:]) <= max(sizes[20:40]) * 1.1
    st = seg.stats()
    assert st["segments"] == 6 and st["bytes"] == seg.bytes_held > 0
    # Segments that left the window are gone for good.
    assert seg.segment_data(50) is None and seg.segment_data(58) is not None
    assert seg.part_data(53, 0) is None and seg.part_data(58, 0) is not None


def test_forward_timestamp_jump_is_a_discontinuity_and_slides_into_the_sequence() -> None:
    frames = live_stream(12.0, gop_s=1.0, jumps={5000: 60_000})
    cfg = SegmenterConfig(Container.TS, target_duration_ms=1000, window_segments=3, retain_segments=0)
    seg = HlsSegmenter(cfg, video=True, audio=True)
    seq_seen = set()
    for f in frames:
        seg.push(f, wall(f))
        seq_seen.add(seg.discontinuity_sequence)
    assert seg.discontinuities == 1
    assert seq_seen == {0, 1}
    assert seg.discontinuity_sequence == 1  # the jumped segment has left the 3-segment window
    # Right after the jump, before it slid out: exactly one segment flagged, starting on the new timeline.
    seg2 = HlsSegmenter(cfg, video=True, audio=True)
    run(seg2, [f for f in frames if f.timestamp < 67_000])
    flagged = [s for s in seg2.segments if s.discontinuity]
    assert len(flagged) == 1 and flagged[0].start_ms == 65_000 and flagged[0].independent
    assert seg2.discontinuity_sequence == 0


def test_backward_jump_is_a_discontinuity_small_reordering_is_not() -> None:
    frames = live_stream(8.0, gop_s=1.0, jumps={4000: -3_900})
    seg = HlsSegmenter(SegmenterConfig(Container.FMP4, target_duration_ms=1000), video=True, audio=True)
    run(seg, frames)
    assert seg.discontinuities == 1
    assert [s.discontinuity for s in seg.segments].count(True) == 1
    # Audio 100 ms behind video (interleave jitter) is not a jump.
    frames = live_stream(5.0, gop_s=1.0)
    jitter = [
        f.with_timestamp(f.timestamp - 100) if f.kind == FrameKind.AUDIO and f.timestamp > 200 else f
        for f in frames
    ]
    seg = HlsSegmenter(SegmenterConfig(Container.TS, target_duration_ms=1000), video=True, audio=True)
    run(seg, jitter)
    assert seg.discontinuities == 0


def test_audio_only_stream_cuts_on_audio_and_finish_ends_it() -> None:
    frames = live_stream(9.0, video=False)
    seg = HlsSegmenter(SegmenterConfig(Container.FMP4, part_target_ms=500), video=False, audio=True)
    run(seg, frames)
    assert len(seg.segments) == 4 and all(1990 <= s.duration_ms <= 2100 for s in seg.segments)
    assert all(p.independent for s in seg.segments for p in s.parts)
    events = seg.finish()
    assert events[-1] == Published(4, None) and seg.ended
    assert seg.push(frames[-1], WALL0) == []


def test_a_stream_without_keyframes_is_still_cut_at_max_segment() -> None:
    frames = live_stream(12.0, gop_s=100.0)
    cfg = SegmenterConfig(Container.TS, target_duration_ms=1000, max_segment_ms=4000)
    seg = HlsSegmenter(cfg, video=True, audio=True)
    run(seg, frames)
    assert [s.duration_ms for s in seg.segments] == [4000, 4000]
    assert [s.independent for s in seg.segments] == [True, False]
    assert seg.target_duration_s == 4  # grew with the longest segment


def test_first_gop_is_kept_when_the_audio_config_trails_the_keyframe() -> None:
    """A demuxed source (TS) sends the audio config with the first ADTS frame, after the first
    video keyframe: the segmenter holds that GOP instead of dropping it."""
    frames = live_stream(4.0, gop_s=2.0)
    audio_header = next(f for f in frames if f.config and f.kind == FrameKind.AUDIO)
    rest = [f for f in frames if f is not audio_header]
    # The audio config arrives after 100 ms of media; audio before it cannot be used.
    late = [f for f in rest if f.timestamp < 100 and f.kind == FrameKind.VIDEO] + [audio_header]
    late += [f for f in rest if f.timestamp >= 100 or f.config]
    seg = HlsSegmenter(SegmenterConfig(Container.FMP4, target_duration_ms=2000), video=True, audio=True)
    events = run(seg, late)
    assert seg.segments[0].start_ms == 0 and Published(0, None) in events
    assert seg.segments[0].parts[0].independent


def test_byte_cap_evicts_oldest_segments_early() -> None:
    frames = live_stream(20.0, gop_s=1.0)
    small = SegmenterConfig(
        Container.TS, target_duration_ms=1000, window_segments=10, max_window_bytes=60_000
    )
    seg = HlsSegmenter(small, video=True, audio=True)
    peak = 0
    for f in frames:
        seg.push(f, wall(f))
        if f.keyframe:
            peak = max(peak, seg.bytes_held - (seg.current.nbytes if seg.current else 0))
    assert seg.evicted_for_bytes > 0 and seg.stats()["evicted_for_bytes"] == seg.evicted_for_bytes
    assert peak <= 60_000 or len(seg.segments) == 1
    assert seg.media_sequence == seg.segments[0].msn or len(seg.listed) < 10


def test_malformed_frames_are_skipped_and_counted_not_raised() -> None:
    frames = live_stream(5.0, gop_s=1.0)
    bad_nal = Frame(FrameKind.VIDEO, 0, b"\x27\x01\x00\x00\x00\x00\x00\x10\x00\x41")  # length past the end
    bad_asc = Frame(FrameKind.AUDIO, 0, b"\xaf\x00\xf8", config=True)  # object type 31: unsupported
    bad_avcc = Frame(FrameKind.VIDEO, 0, b"\x17\x00\x00\x00\x00\x02\x00", config=True)
    for container in (Container.TS, Container.FMP4):
        seg = HlsSegmenter(SegmenterConfig(container, target_duration_ms=1000), video=True, audio=True)
        for i, f in enumerate(frames):
            seg.push(f, wall(f))
            if i in (100, 200, 300):
                t = f.timestamp
                for bad in (bad_nal, bad_asc, bad_avcc):
                    seg.push(bad.with_timestamp(t), wall(f))
        assert seg.malformed_frames == 9 and seg.stats()["malformed_frames"] == 9
        assert seg.last_error is not None
        assert len(seg.segments) == 4  # the stream's HLS output carried on
