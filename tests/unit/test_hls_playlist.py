"""Playlist rendering (classic and LL-HLS), parsed with the m3u8 package and validated, and
the blocking-reload decision."""

from __future__ import annotations

import m3u8
import pytest
from hls_frames import WALL0, live_stream, wall
from hls_validator import validate

from liverelay.media.hls.playlist import (
    ADVANCE_PART_LIMIT,
    Reload,
    Resource,
    ResourceNames,
    parse_resource,
    part_decision,
    reload_decision,
    render_playlist,
    skipped_count,
)
from liverelay.media.hls.segmenter import Container, HlsSegmenter, SegmenterConfig


def fed(cfg: SegmenterConfig, seconds: float, **kw: object) -> HlsSegmenter:
    seg = HlsSegmenter(cfg, video=True, audio=True)
    for f in live_stream(seconds, **kw):  # type: ignore[arg-type]
        seg.push(f, wall(f, 0.25))
    return seg


def test_classic_ts_playlist() -> None:
    seg = fed(SegmenterConfig(Container.TS, target_duration_ms=2000, window_segments=3), 11.0)
    text = render_playlist(seg, names=ResourceNames(query="?s=abc"))
    assert validate(text) == []
    pl = m3u8.loads(text)
    assert pl.version == 3 and pl.target_duration == 2 and pl.media_sequence == 2
    assert [s.uri for s in pl.segments] == ["seg2.ts?s=abc", "seg3.ts?s=abc", "seg4.ts?s=abc"]
    assert [s.duration for s in pl.segments] == [2.0, 2.0, 2.0]
    assert pl.segments[0].program_date_time.timestamp() == pytest.approx(WALL0 + 4.25)
    assert pl.is_independent_segments and not pl.is_endlist
    assert "#EXT-X-PART" not in text and "#EXT-X-MAP" not in text and "PRELOAD" not in text
    seg.finish()
    assert m3u8.loads(render_playlist(seg)).is_endlist


def test_ll_playlist_parts_hint_and_server_control() -> None:
    cfg = SegmenterConfig(Container.FMP4, target_duration_ms=2000, part_target_ms=400, part_segments=2)
    seg = fed(cfg, 9.5, gop_s=2.0)
    text = render_playlist(seg)
    assert validate(text) == [], text
    pl = m3u8.loads(text)
    assert pl.version == 9
    assert pl.server_control.can_block_reload == "YES"
    assert pl.server_control.part_hold_back == pytest.approx(1.2)
    assert pl.server_control.can_skip_until == pytest.approx(12.0)
    assert pl.part_inf.part_target == pytest.approx(0.4)
    assert pl.segment_map[0].uri == f"init{seg.segments[0].init_id}.mp4"
    listed = [s for s in pl.segments if s.uri]
    assert [bool(s.parts) for s in listed] == [False] * (len(listed) - 2) + [True, True]
    open_seg = pl.segments[-1]
    assert open_seg.uri is None and open_seg.parts  # the segment in progress, parts only
    cur = seg.current
    assert cur is not None
    assert pl.preload_hint.uri == f"part{cur.msn}.{len(cur.parts)}.m4s"


def test_validator_catches_broken_playlists() -> None:
    cfg = SegmenterConfig(Container.FMP4, target_duration_ms=2000, part_target_ms=400)
    text = render_playlist(fed(cfg, 7.5, gop_s=2.0))
    assert validate(text) == []
    assert validate(text.replace("#EXT-X-TARGETDURATION:2", "#EXT-X-TARGETDURATION:1"))
    assert validate(text.replace("PART-TARGET=0.400", "PART-TARGET=0.200"))
    hint = next(ln for ln in text.splitlines() if ln.startswith("#EXT-X-PRELOAD-HINT"))
    assert validate(text.replace(hint, hint.replace(".m4s", "9.m4s")))
    assert validate(text.replace(",INDEPENDENT=YES", "", 1))


def test_delta_update_skips_old_segments_only() -> None:
    cfg = SegmenterConfig(Container.FMP4, target_duration_ms=1000, part_target_ms=300, window_segments=20)
    seg = fed(cfg, 24.5)
    full = m3u8.loads(render_playlist(seg))
    skipped = skipped_count(seg)
    assert skipped > 0
    text = render_playlist(seg, skip=True)
    assert validate(text) == []
    delta = m3u8.loads(text)
    assert delta.skip.skipped_segments == skipped
    assert delta.media_sequence == full.media_sequence
    assert [s.uri for s in delta.segments] == [s.uri for s in full.segments][skipped:]
    kept = sum(s.duration for s in delta.segments if s.uri)
    assert kept >= delta.server_control.can_skip_until


def test_discontinuity_tags() -> None:
    cfg = SegmenterConfig(Container.TS, target_duration_ms=1000, window_segments=4)
    seg = fed(cfg, 9.0, jumps={5000: 60_000})
    text = render_playlist(seg)
    assert validate(text) == []
    pl = m3u8.loads(text)
    assert [s.discontinuity for s in pl.segments] == [False, True, False, False]
    assert [round(s.program_date_time.timestamp() - WALL0) for s in pl.segments] == [4, 65, 66, 67]
    assert pl.discontinuity_sequence == 0


def test_reload_decision() -> None:
    cfg = SegmenterConfig(Container.FMP4, target_duration_ms=2000, part_target_ms=400)
    seg = fed(cfg, 7.5, gop_s=2.0)  # segments 0..2 complete, 3 open
    cur = seg.current
    assert cur is not None and cur.msn == 3 and seg.last_complete_msn == 2
    have = len(cur.parts)
    assert have >= 1
    assert reload_decision(seg, None, None) is Reload.READY
    assert reload_decision(seg, None, 1) is Reload.BAD_REQUEST
    assert reload_decision(seg, 2, None) is Reload.READY
    assert reload_decision(seg, 2, 99) is Reload.READY  # a complete segment: "or later" is there
    assert reload_decision(seg, 3, None) is Reload.WAIT
    assert reload_decision(seg, 3, have - 1) is Reload.READY
    assert reload_decision(seg, 3, have) is Reload.WAIT
    assert reload_decision(seg, 3, have - 1 + ADVANCE_PART_LIMIT) is Reload.WAIT
    assert reload_decision(seg, 3, have + ADVANCE_PART_LIMIT) is Reload.BAD_REQUEST
    assert reload_decision(seg, 4, 0) is Reload.WAIT
    assert reload_decision(seg, 5, None) is Reload.WAIT
    assert reload_decision(seg, 6, None) is Reload.BAD_REQUEST  # more than two past the last segment
    assert reload_decision(seg, -1, None) is Reload.BAD_REQUEST
    ts = fed(SegmenterConfig(Container.TS, target_duration_ms=2000), 7.5, gop_s=2.0)
    assert reload_decision(ts, 3, 0) is Reload.BAD_REQUEST  # no parts in classic HLS
    assert reload_decision(ts, 3, None) is Reload.WAIT
    assert reload_decision(ts, 5, None) is Reload.BAD_REQUEST
    # The hinted part: wait for it; a part that can never come: refuse.
    assert part_decision(seg, 3, have) is Reload.WAIT
    assert part_decision(seg, 3, 0) is Reload.READY
    assert part_decision(seg, 0, 0) is Reload.BAD_REQUEST  # parts of old segments are dropped
    seg.finish()
    assert reload_decision(seg, 3, None) is Reload.READY


def test_waiting_request_becomes_ready_when_the_part_arrives() -> None:
    cfg = SegmenterConfig(Container.FMP4, target_duration_ms=2000, part_target_ms=400)
    seg = HlsSegmenter(cfg, video=True, audio=True)
    frames = live_stream(6.0, gop_s=2.0)
    target: tuple[int, int] | None = None
    ready_at = None
    for f in frames:
        events = seg.push(f, wall(f))
        if target is None and seg.current is not None and seg.current.msn == 1:
            target = (1, len(seg.current.parts))
            assert reload_decision(seg, *target) is Reload.WAIT
        elif target is not None and ready_at is None and reload_decision(seg, *target) is Reload.READY:
            ready_at = f.timestamp
            assert (target[0], target[1]) in [(e.msn, e.part) for e in events]
    assert ready_at is not None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("seg12.ts", Resource("segment", 12)),
        ("seg3.m4s", Resource("segment", 3)),
        ("part7.2.m4s", Resource("part", 7, 2)),
        ("init4.mp4", Resource("init", 4)),
        ("seg.ts", None),
        ("../seg1.ts", None),
        ("part1.m4s", None),
        ("seg1.ts?x", None),
    ],
)
def test_parse_resource(name: str, expected: Resource | None) -> None:
    assert parse_resource(name) == expected


def test_resource_names_round_trip() -> None:
    names = ResourceNames()
    assert parse_resource(names.segment(5, Container.TS)) == Resource("segment", 5)
    assert parse_resource(names.part(5, 1)) == Resource("part", 5, 1)
    assert parse_resource(names.init(2)) == Resource("init", 2)


def test_between_segments_the_hint_names_the_next_segments_first_part() -> None:
    """After a discontinuity the segmenter waits for a keyframe with no open segment: the
    playlist still hints the part that will come, and a request for it waits."""
    cfg = SegmenterConfig(Container.FMP4, target_duration_ms=1000, part_target_ms=300)
    frames = live_stream(6.0, gop_s=1.0, jumps={3500: 30_000})
    seg = HlsSegmenter(cfg, video=True, audio=True)
    for f in frames:
        seg.push(f, wall(f))
        if f.timestamp >= 33_500:
            break
    assert seg.current is None and seg.started
    text = render_playlist(seg)
    assert validate(text) == []
    assert m3u8.loads(text).preload_hint.uri == f"part{seg.next_msn}.0.m4s"
    assert part_decision(seg, seg.next_msn, 0) is Reload.WAIT
    assert part_decision(seg, seg.next_msn + 1, 0) is Reload.BAD_REQUEST
    assert reload_decision(seg, seg.next_msn, 0) is Reload.WAIT


def test_negative_timestamps_are_dropped() -> None:
    seg = HlsSegmenter(SegmenterConfig(Container.FMP4, target_duration_ms=1000), video=True, audio=True)
    frames = live_stream(3.0, gop_s=1.0, start_ms=-1000)
    for f in frames:
        seg.push(f, wall(f))
    assert seg.dropped_frames > 0
    assert seg.segments and seg.segments[0].start_ms == 0
