"""The pure timeline maths of hub/timeline.py: byte-free, clock-free fixtures."""

from __future__ import annotations

from liverelay.hub.timeline import (
    DEFAULT_FRAME_MS,
    JUMP_MS,
    SPLICE_MAX_WAIT_FRAMES,
    SPLICE_MAX_WAIT_MS,
    SpliceGate,
    Timeline,
)
from liverelay.media.frame import Frame, FrameKind

V, A = FrameKind.VIDEO, FrameKind.AUDIO


def video(ts: int, key: bool = False) -> Frame:
    return Frame(V, ts, b"\x17\x01" if key else b"\x27\x01", keyframe=key)


def audio(ts: int) -> Frame:
    return Frame(A, ts, b"\xaf\x01")


def header(kind: FrameKind, ts: int) -> Frame:
    return Frame(kind, ts, b"\x17\x00" if kind is V else b"\xaf\x00", config=True)


def stamps(timeline: Timeline, frames: list[Frame]) -> list[int]:
    return [timeline.stamp(f).timestamp for f in frames]


def test_first_frame_lands_at_zero_and_the_rest_keep_their_spacing() -> None:
    t = Timeline()
    assert stamps(t, [video(5000, True), audio(5010), video(5033), video(5066)]) == [0, 10, 33, 66]
    assert t.last_out == 66 and t.frame_ms == 33


def test_an_unmoved_frame_is_returned_as_is() -> None:
    t = Timeline()
    first = video(0, True)
    assert t.stamp(first) is first


def test_restart_places_the_new_source_one_frame_after_the_last_sent() -> None:
    t = Timeline()
    stamps(t, [video(1000, True), video(1040), video(1080)])
    t.restart()
    # The new origin's clock is anywhere; its first frame lands one frame interval later.
    assert stamps(t, [video(900_000, True), video(900_040)]) == [120, 160]


def test_a_jump_within_one_source_is_rebased_and_counted() -> None:
    t = Timeline()
    stamps(t, [video(0, True), video(40)])
    assert stamps(t, [video(40 + JUMP_MS + 1)]) == [80]
    assert t.rebases == 1
    # Backwards past JUMP_MS too (an origin restarting at 0).
    assert stamps(t, [video(10)]) == [120]
    assert t.rebases == 2


def test_a_small_step_back_is_clamped_per_kind() -> None:
    t = Timeline()
    assert stamps(t, [video(100, True), audio(120), audio(110), video(90)]) == [0, 20, 20, 0]
    assert t.rebases == 0


def test_a_far_header_is_placed_at_the_current_time_without_moving_the_timeline() -> None:
    t = Timeline()
    stamps(t, [video(50_000, True), video(50_040)])
    out = t.stamp(header(V, 0))
    assert out.timestamp == 40 and t.rebases == 0
    assert stamps(t, [video(50_080)]) == [80]


def test_header_time_is_no_later_than_what_its_kind_sent() -> None:
    t = Timeline()
    stamps(t, [video(0, True), audio(5), video(40)])
    h = header(A, 0)
    assert t.header_time(h, 100) == 5
    assert t.header_time(header(V, 0), 10) == 10
    placed = t.place_header(h, 200)
    assert placed.timestamp == 200 and t.last_of(A) == 200


def test_frame_interval_ignores_gaps() -> None:
    t = Timeline()
    stamps(t, [video(0, True), video(500)])
    assert t.frame_ms == DEFAULT_FRAME_MS


def test_splice_gate_waits_for_a_keyframe_with_video() -> None:
    gate = SpliceGate()
    gate.open()
    assert gate.pending
    assert gate.drops(video(0), has_video=True)
    assert gate.drops(audio(10), has_video=True)
    assert not gate.drops(video(40, True), has_video=True)
    gate.close()
    assert not gate.pending


def test_splice_gate_does_not_wait_without_video() -> None:
    gate = SpliceGate()
    gate.open()
    assert not gate.drops(audio(0), has_video=False)


def test_splice_gate_gives_up_after_the_time_bound() -> None:
    gate = SpliceGate()
    gate.open()
    assert gate.drops(video(1000), has_video=True)
    assert gate.drops(video(1000 + SPLICE_MAX_WAIT_MS - 1), has_video=True)
    assert not gate.drops(video(1000 + SPLICE_MAX_WAIT_MS), has_video=True)


def test_splice_gate_gives_up_after_the_frame_bound() -> None:
    gate = SpliceGate()
    gate.open()
    results = [gate.drops(audio(0), has_video=True) for _ in range(SPLICE_MAX_WAIT_FRAMES)]
    assert all(results[:-1]) and not results[-1]
    gate.open()  # a new splice starts counting again
    assert gate.drops(audio(0), has_video=True)
