"""Property test: whatever the frame rate, GOP, part target and timestamp jumps, every playlist
rendered along the way validates, and media sequence / segment numbering only move forward."""

from __future__ import annotations

import m3u8
from hls_frames import live_stream, wall
from hls_validator import validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liverelay.media.hls.playlist import Reload, reload_decision, render_playlist
from liverelay.media.hls.segmenter import Container, HlsSegmenter, SegmenterConfig


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fps=st.sampled_from([15, 24, 25, 30, 50, 60]),
    gop_s=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
    target_ms=st.sampled_from([0, 1000, 2000, 4000]),
    part_ms=st.sampled_from([200, 333, 500, 1000]),
    jump=st.one_of(st.none(), st.integers(min_value=-20_000, max_value=120_000)),
    container=st.sampled_from([Container.TS, Container.FMP4]),
    window=st.integers(min_value=1, max_value=8),
)
def test_playlists_stay_valid(
    fps: int,
    gop_s: float,
    target_ms: int,
    part_ms: int,
    jump: int | None,
    container: Container,
    window: int,
) -> None:
    jumps = {4000: jump} if jump else None
    frames = live_stream(9.0, fps=fps, gop_s=gop_s, jumps=jumps)
    cfg = SegmenterConfig(
        container, target_duration_ms=target_ms, part_target_ms=part_ms, window_segments=window
    )
    seg = HlsSegmenter(cfg, video=True, audio=True)
    last_seq = -1
    last_target = 0
    clock = 0.0
    for i, f in enumerate(frames):
        clock = max(clock, wall(f))  # a real wall clock does not follow a backward timestamp jump
        seg.push(f, clock)
        if not seg.playable or i % 7:
            continue
        text = render_playlist(seg)
        assert validate(text) == [], text
        pl = m3u8.loads(text)
        assert pl.media_sequence >= last_seq
        assert pl.target_duration >= last_target
        last_seq, last_target = pl.media_sequence, pl.target_duration
        if seg.current is not None and seg.parts_enabled:
            nxt = len(seg.current.parts)
            assert reload_decision(seg, seg.current.msn, nxt) is Reload.WAIT
            if nxt:
                assert reload_decision(seg, seg.current.msn, nxt - 1) is Reload.READY
    seg.finish()
    assert validate(render_playlist(seg)) == []
    msns = [s.msn for s in seg.segments]
    assert msns == sorted(msns) and len(set(msns)) == len(msns)
