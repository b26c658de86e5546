"""The stream timeline: pure timestamp maths, no IO, no clock, no viewers.

A stream's outgoing timestamps never go back, whatever its sources do:
- the first frame of the stream lands at 0;
- after a source change (`begin_splice()`), the first frame that resumes the stream
  (the new source's video keyframe) lands one frame duration after the last sent
  timestamp: the offset is chosen anew;
- within one source, a timestamp going back a little is clamped (per media kind), and
  a jump of more than JUMP_MS either way is rebased like a splice (origin restarts,
  32-bit wrap-around); a codec header stamped far away (some encoders send 0
  mid-stream) is placed at the current time without moving the timeline.

`SpliceGate` decides, frame by frame, whether a splice still waits for the new
source's keyframe. The Stream (hub/stream.py) combines both with its headers, GOP
cache and fan-out.
"""

from __future__ import annotations

from ..media.frame import Frame, FrameKind

JUMP_MS = 3000
DEFAULT_FRAME_MS = 40
# A video frame interval above this is a gap, not a frame rate.
MAX_FRAME_MS = 200
# A splice waits for a video keyframe at most this long (source time) before it
# gives up and resumes on whatever comes (e.g. the new origin has no video).
SPLICE_MAX_WAIT_MS = 6000
SPLICE_MAX_WAIT_FRAMES = 1000

_VIDEO = FrameKind.VIDEO


class Timeline:
    """Maps each source's timestamps onto the stream's monotonic outgoing timeline."""

    __slots__ = ("_frame_ms", "_last_in_video", "_last_kind_out", "_last_out", "_offset", "rebases")

    def __init__(self) -> None:
        self._offset: int | None = None
        self._last_out: int | None = None  # the highest timestamp sent so far
        self._last_kind_out: dict[FrameKind, int] = {}
        self._frame_ms = DEFAULT_FRAME_MS
        self._last_in_video: int | None = None
        self.rebases = 0  # jumps within one source that were rebased

    @property
    def last_out(self) -> int | None:
        """The highest outgoing timestamp so far (ms), or None before the first frame."""
        return self._last_out

    @property
    def frame_ms(self) -> int:
        """The video frame interval last seen (ms); DEFAULT_FRAME_MS until known."""
        return self._frame_ms

    def last_of(self, kind: FrameKind) -> int | None:
        """The highest outgoing timestamp of one media kind, or None."""
        return self._last_kind_out.get(kind)

    def restart(self) -> None:
        """A new source follows: its first stamped frame picks a new offset."""
        self._offset = None
        self._last_in_video = None

    def stamp(self, frame: Frame, owned: bool = False) -> Frame:
        """The frame with its outgoing timestamp (the same object when it does not move).
        `owned`: the caller handed the frame over (no one else holds it), so it is restamped
        in place rather than copied (a relay pull's frames: no allocation per frame)."""
        ts = frame.timestamp
        kind = frame.kind
        last = self._last_out
        if kind is _VIDEO and not frame.config:
            prev = self._last_in_video
            if prev is not None and 0 < ts - prev <= MAX_FRAME_MS:
                self._frame_ms = ts - prev
            self._last_in_video = ts
        if self._offset is None:
            self._offset = (0 if last is None else last + self._frame_ms) - ts
        out = ts + self._offset
        if last is not None and (out > last + JUMP_MS or out < last - JUMP_MS):
            if frame.config:
                out = last
                self._raise_kind(kind, out)
                return _moved(frame, out, owned)
            self.rebases += 1
            self._offset = last + self._frame_ms - ts
            out = last + self._frame_ms
        kind_last = self._last_kind_out.get(kind)
        if kind_last is not None and out < kind_last:
            out = kind_last
        elif out < 0:
            out = 0  # a kind's first frame slightly before the stream's first frame
        self._last_kind_out[kind] = out
        if last is None or out > last:
            self._last_out = out
        if out == ts and not frame.cache:
            return frame
        return _moved(frame, out, owned)

    def place_header(self, frame: Frame, ts: int) -> Frame:
        """A codec header re-sent at `ts` (a splice): its kind's timeline moves up to ts."""
        self._raise_kind(frame.kind, ts)
        return frame.with_timestamp(ts)

    def header_time(self, frame: Frame, ts: int) -> int:
        """When a header must go so that it is no later than `ts` nor than what its kind sent."""
        kind_last = self._last_kind_out.get(frame.kind, ts)
        return min(ts, kind_last)

    def _raise_kind(self, kind: FrameKind, ts: int) -> None:
        self._last_kind_out[kind] = max(ts, self._last_kind_out.get(kind, ts))


def _moved(frame: Frame, ts: int, owned: bool) -> Frame:
    """`frame` at `ts`: restamped in place when owned and not serialised yet, else a copy."""
    if owned and not frame.cache:
        frame.timestamp = ts
        return frame
    return frame.with_timestamp(ts)


class SpliceGate:
    """While a splice is pending, which frames of the new source are dropped.

    With video, everything before the new source's first video keyframe is dropped
    (a viewer cannot decode it), but for at most SPLICE_MAX_WAIT_MS of source time or
    SPLICE_MAX_WAIT_FRAMES frames: then the stream resumes without a keyframe.
    """

    __slots__ = ("_dropped", "_first_ts", "pending")

    def __init__(self) -> None:
        self.pending = False
        self._first_ts: int | None = None
        self._dropped = 0

    def open(self) -> None:
        self.pending = True
        self._first_ts = None
        self._dropped = 0

    def drops(self, frame: Frame, has_video: bool) -> bool:
        """True: drop this (non-header) frame and keep waiting. False: the splice happens at it."""
        if not has_video or (frame.kind is _VIDEO and frame.keyframe):
            return False
        if self._first_ts is None:
            self._first_ts = frame.timestamp
        self._dropped += 1
        return (
            frame.timestamp - self._first_ts < SPLICE_MAX_WAIT_MS and self._dropped < SPLICE_MAX_WAIT_FRAMES
        )

    def close(self) -> None:
        self.pending = False
