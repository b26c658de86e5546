"""Per-stream HLS segmenter, sans-IO: Frames (+ the wall clock of their receipt) in,
segments and LL-HLS parts out, in a bounded in-memory window.

One `HlsSegmenter` produces one variant: MPEG-TS segments (classic HLS) or fMP4
segments made of parts (LL-HLS). A stream serving both runs two segmenters.

Rules:
- nothing is produced before the decoder configs of the expected tracks and, with
  video, a keyframe: the first segment starts on it;
- a segment is cut at the first video keyframe at least `target_duration_ms` after
  its start (audio-only: at the first audio frame past it). With `target_duration_ms
  = 0` the target is the first GOP's duration, clamped to [1 s, 10 s]. A stream whose
  keyframes stop is still cut after `max_segment_ms` (that segment is not independent);
- parts (fMP4 only) are cut on a video frame when the part would otherwise outgrow
  `part_target_ms`, and at every segment boundary; a part that starts on a keyframe
  is INDEPENDENT;
- a timestamp jump (backwards by more than `backward_tolerance_ms` on a track, or
  forwards by more than `jump_ms`) ends the segment, and the next one (from the
  next keyframe) carries EXT-X-DISCONTINUITY; the discontinuity sequence counts the
  discontinuities that slid out of the window;
- the window lists `window_segments` segments and keeps `retain_segments` extra ones
  fetchable after they leave the playlist (RFC 8216 6.2.2); part bytes are kept for
  the segments whose parts are listed (`part_segments` + the one in progress).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from ..elementary import (
    AAC_FRAME_SAMPLES,
    BitstreamError,
    VideoCodec,
    VideoPacket,
    aac_payload,
    parse_asc,
    parse_video_config,
    parse_video_tag,
)
from ..fmp4 import Fmp4Writer
from ..frame import Frame, FrameKind
from ..mpegts import TsError, TsMuxer

AUTO_TARGET_MIN_MS = 1000
AUTO_TARGET_MAX_MS = 10000
PREROLL_MAX_FRAMES = 1000  # frames held from the first keyframe while a track's config is missing
AUDIO_ONLY_TARGET_MS = 2000  # the auto target of a stream without video (no GOP to follow)


class Container(StrEnum):
    TS = "ts"  # classic HLS
    FMP4 = "fmp4"  # LL-HLS (CMAF parts)


@dataclass(frozen=True, slots=True)
class SegmenterConfig:
    container: Container
    target_duration_ms: int = 0  # 0: the first GOP's duration, clamped to [1 s, 10 s]
    part_target_ms: int = 333  # fMP4 only; 0 disables parts
    window_segments: int = 6  # segments listed in the playlist
    retain_segments: int = 2  # extra segments still fetchable after leaving the playlist
    part_segments: int = 2  # complete segments whose parts stay listed (plus the open one)
    max_segment_ms: int = 20000  # cut even without a keyframe past this
    jump_ms: int = 10000  # a forward timestamp jump larger than this is a discontinuity
    backward_tolerance_ms: int = 500  # a backward step larger than this is a discontinuity
    max_window_bytes: int = 64 << 20  # past this, the oldest segments go early (min: the newest one)
    first_msn: int = 0  # the first segment's sequence number (a variant made again continues the old one's)
    first_init_id: int = 0  # fMP4: the first init segment's id (likewise)


class Published(NamedTuple):
    """A new resource: part `part` of segment `msn`, or (part None) segment `msn` complete."""

    msn: int
    part: int | None


@dataclass(slots=True)
class Part:
    index: int
    start_ms: int
    duration_ms: int
    independent: bool
    data: bytes


@dataclass(slots=True)
class Segment:
    msn: int
    start_ms: int
    wall_clock: float  # epoch seconds at the receipt of its first frame
    discontinuity: bool
    independent: bool
    init_id: int  # fMP4: which init segment (EXT-X-MAP) it needs; TS: 0
    duration_ms: int = 0
    complete: bool = False
    parts: list[Part] = field(default_factory=list)
    data: bytes = b""  # set when complete
    chunks: list[bytes] = field(default_factory=list)  # TS bytes while open

    @property
    def nbytes(self) -> int:
        return len(self.data) + sum(len(c) for c in self.chunks) + sum(len(p.data) for p in self.parts)


class HlsSegmenter:
    """Feed `push(frame, wall_clock)`; read `segments`, `current`, `segment_data()`, `part_data()`."""

    def __init__(self, config: SegmenterConfig, *, video: bool, audio: bool) -> None:
        if not video and not audio:
            raise ValueError("a segmenter needs at least one track")
        self.config = config
        self.expect_video = video
        self.expect_audio = audio
        self.segments: deque[Segment] = deque()  # complete, oldest first (listed + retained)
        self.current: Segment | None = None
        self.ended = False
        self.dropped_frames = 0
        self.malformed_frames = 0  # frames skipped because their content could not be parsed
        self.last_error: str | None = None  # the latest of those, for the caller's (rate-limited) log
        self.evicted_for_bytes = 0  # segments dropped early because of max_window_bytes
        self.discontinuities = 0
        self._inits: dict[int, bytes] = {}
        self._init_version = -1
        self._next_msn = config.first_msn
        self._target_ms = config.target_duration_ms
        self._max_duration_ms = 0
        self._max_part_ms = 0
        self._configs: dict[FrameKind, Frame] = {}
        self._video_codec: VideoCodec | None = None
        self._ts: TsMuxer | None = None
        self._mp4: Fmp4Writer | None = None
        self._last_ts: dict[FrameKind, int] = {}
        self._last_video_interval = 33
        # Recent frame intervals: a part is cut when the next frame, at the longest recent
        # interval (ms rounding makes 30 fps alternate 33/34), would push it past the target.
        self._video_intervals: deque[int] = deque([33], maxlen=8)
        self._audio_interval = 23
        self._part_start = 0
        self._part_independent = False
        self._pending_discontinuity = False
        self._first_gop_start: int | None = None
        self._dropped_discontinuities = 0
        self._preroll: list[tuple[Frame, float]] = []

    # ------------------------------------------------------------ queries
    @property
    def parts_enabled(self) -> bool:
        return self.config.container is Container.FMP4 and self.config.part_target_ms > 0

    @property
    def listed(self) -> list[Segment]:
        """Complete segments listed in the playlist, oldest first."""
        n = self.config.window_segments
        segs = list(self.segments)
        return segs[-n:] if n > 0 else segs

    @property
    def media_sequence(self) -> int:
        listed = self.listed
        if listed:
            return listed[0].msn
        return self.current.msn if self.current is not None else 0

    @property
    def discontinuity_sequence(self) -> int:
        """EXT-X-DISCONTINUITY-SEQUENCE: discontinuities before the first listed segment."""
        listed = self.listed
        first = listed[0].msn if listed else (self.current.msn if self.current else self._next_msn)
        unlisted = sum(1 for s in self.segments if s.msn < first and s.discontinuity)
        return self._dropped_discontinuities + unlisted

    @property
    def target_duration_s(self) -> int:
        """EXT-X-TARGETDURATION: never below any segment's rounded duration; only grows."""
        ms = max(self._target_ms or AUTO_TARGET_MIN_MS, self._max_duration_ms)
        return max(1, (ms + 500) // 1000)

    @property
    def part_target_s(self) -> float:
        """EXT-X-PART-INF PART-TARGET: the configured target, or the longest part so far when
        irregular timestamps made one overrun it (so every part stays within it); only grows."""
        return max(self.config.part_target_ms, self._max_part_ms) / 1000

    @property
    def started(self) -> bool:
        return self.current is not None or bool(self.segments)

    @property
    def playable(self) -> bool:
        """A playlist has something to list: a complete segment, or (LL-HLS) a part."""
        return bool(self.segments) or (
            self.parts_enabled and self.current is not None and bool(self.current.parts)
        )

    @property
    def _init_id(self) -> int:
        """The id of the init segment for the current configs (fMP4)."""
        return self.config.first_init_id + self._init_version

    @property
    def next_init_id(self) -> int:
        """An id no init segment of this segmenter has had (for a segmenter that follows it)."""
        return self._init_id + 1

    @property
    def next_msn(self) -> int:
        """The sequence number the next segment will get (the open one's + 1)."""
        return self._next_msn

    @property
    def last_complete_msn(self) -> int:
        return self.segments[-1].msn if self.segments else -1

    @property
    def bytes_held(self) -> int:
        return (
            sum(s.nbytes for s in self.segments)
            + (self.current.nbytes if self.current else 0)
            + sum(len(b) for b in self._inits.values())
        )

    def stats(self) -> dict[str, int]:
        return {
            "segments": len(self.segments),
            "parts": sum(len(s.parts) for s in self.segments)
            + (len(self.current.parts) if self.current else 0),
            "bytes": self.bytes_held,
            "dropped_frames": self.dropped_frames,
            "discontinuities": self.discontinuities,
            "evicted_for_bytes": self.evicted_for_bytes,
            "malformed_frames": self.malformed_frames,
        }

    def find(self, msn: int) -> Segment | None:
        if self.current is not None and self.current.msn == msn:
            return self.current
        for seg in self.segments:
            if seg.msn == msn:
                return seg
        return None

    def segment_data(self, msn: int) -> bytes | None:
        seg = self.find(msn)
        return seg.data if seg is not None and seg.complete else None

    def part_data(self, msn: int, index: int) -> bytes | None:
        seg = self.find(msn)
        if seg is None or index < 0 or index >= len(seg.parts):
            return None
        return seg.parts[index].data

    def init_data(self, init_id: int) -> bytes | None:
        return self._inits.get(init_id)

    # ------------------------------------------------------------ input
    def push(self, frame: Frame, wall_clock: float) -> list[Published]:
        """One frame from the hub, with the wall clock (epoch seconds) of its receipt.
        Never raises on the frame's content: a malformed frame (bad NAL lengths, a broken
        decoder config) is skipped and counted in `malformed_frames`, so one bad publisher
        frame costs one frame, not the stream's HLS output."""
        if self.ended or frame.kind == FrameKind.DATA:
            return []
        try:
            return self._push(frame, wall_clock)
        except (BitstreamError, TsError) as exc:
            self.malformed_frames += 1
            self.last_error = f"{frame!r}: {exc}"
            return []

    def _push(self, frame: Frame, wall_clock: float) -> list[Published]:
        out: list[Published] = []
        if frame.config:
            self._config_frame(frame)
            if self._preroll and self.current is None and self._can_start(self._preroll[0][0]):
                return self._replay_preroll()
            return out
        kind = frame.kind
        if kind == FrameKind.VIDEO and not self.expect_video:
            return out
        if kind == FrameKind.AUDIO and not self.expect_audio:
            return out
        if not (self._is_video_media(frame) if kind == FrameKind.VIDEO else aac_payload(frame.payload)):
            self.dropped_frames += 1  # before its decoder config, or a codec the variant does not carry
            return out
        t = frame.timestamp
        if t < 0:
            # The hub's timelines start at 0; a negative time has no place in tfdt/PTS.
            self.dropped_frames += 1
            return out
        last = self._last_ts.get(kind)
        if last is not None and (
            t < last - self.config.backward_tolerance_ms or t > last + self.config.jump_ms
        ):
            self._discontinuity(out)
            last = None
        if kind == FrameKind.VIDEO and last is not None and t > last:
            self._last_video_interval = t - last
            self._video_intervals.append(t - last)
        self._last_ts[kind] = t

        cur = self.current
        video_leads = self.expect_video
        if cur is None:
            if not self._can_start(frame):
                self._hold(frame, wall_clock)
                return out
            self._preroll = []
            self._open_segment(t, wall_clock, independent=True)
        else:
            leads = (kind == FrameKind.VIDEO) if video_leads else (kind == FrameKind.AUDIO)
            if leads:
                self._maybe_cut(frame, wall_clock, out)
        self._add(frame)
        return out

    def finish(self) -> list[Published]:
        """End of stream: close what is open; the playlist gets EXT-X-ENDLIST."""
        out: list[Published] = []
        if self.current is not None:
            self._close_segment(self._estimated_end(), out)
        self.ended = True
        return out

    # ------------------------------------------------------------ internals
    def _is_video_media(self, frame: Frame) -> bool:
        tag = parse_video_tag(frame.payload)
        return tag is not None and tag.packet is VideoPacket.FRAMES and tag.codec is self._video_codec

    def _hold(self, frame: Frame, wall_clock: float) -> None:
        """Before the start: keep the frames from a video keyframe on while a track's config is
        still missing (a demuxed source often sends the audio config after the first keyframe),
        so the first GOP is not lost. Bounded by PREROLL_MAX_FRAMES and max_segment_ms."""
        video_ready = self._video_codec is not None and FrameKind.VIDEO in self._configs
        if self.expect_video and video_ready and frame.kind == FrameKind.VIDEO and frame.keyframe:
            self.dropped_frames += len(self._preroll)
            self._preroll = [(frame, wall_clock)]
            return
        if self._preroll:
            first = self._preroll[0][0].timestamp
            if (
                len(self._preroll) < PREROLL_MAX_FRAMES
                and 0 <= frame.timestamp - first <= self.config.max_segment_ms
            ):
                self._preroll.append((frame, wall_clock))
                return
            self.dropped_frames += len(self._preroll)
            self._preroll = []
        self.dropped_frames += 1

    def _replay_preroll(self) -> list[Published]:
        held, self._preroll = self._preroll, []
        self._last_ts.clear()
        out: list[Published] = []
        for frame, wall_clock in held:
            out += self._push(frame, wall_clock)
        return out

    def _config_frame(self, frame: Frame) -> None:
        if frame.kind == FrameKind.VIDEO and self.expect_video:
            tag = parse_video_tag(frame.payload)
            if tag is None or tag.packet is not VideoPacket.CONFIG:
                return
            if self._video_codec is not None and tag.codec is not self._video_codec and self.started:
                return  # a codec switch needs a new variant; keep the one the playlist announced
            parse_video_config(tag.codec, tag.data)  # raises before a broken config is kept
            self._video_codec = tag.codec
        elif frame.kind == FrameKind.AUDIO and self.expect_audio:
            aac = aac_payload(frame.payload)
            if aac is None:
                return
            self._audio_interval = max(1, AAC_FRAME_SAMPLES * 1000 // parse_asc(aac[1]).sample_rate)
        else:
            return
        self._configs[frame.kind] = frame
        self._add(frame)

    def _can_start(self, frame: Frame) -> bool:
        if self.expect_video and (self._video_codec is None or FrameKind.VIDEO not in self._configs):
            return False
        if self.expect_audio and FrameKind.AUDIO not in self._configs:
            return False
        if self.expect_video:
            return frame.kind == FrameKind.VIDEO and frame.keyframe
        return frame.kind == FrameKind.AUDIO

    def _add(self, frame: Frame) -> None:
        if self._ts is not None:
            if self.current is not None:
                self.current.chunks.append(self._ts.mux(frame))
            else:
                self._ts.mux(frame)  # config frames between segments: state only
        elif self._mp4 is not None:
            self._mp4.add(frame)

    def _ensure_muxer(self) -> None:
        if self._ts is not None or self._mp4 is not None:
            return
        video = self._video_codec if self.expect_video else None
        if self.config.container is Container.TS:
            self._ts = TsMuxer(video=video, audio=self.expect_audio)
        else:
            self._mp4 = Fmp4Writer(video=video, audio=self.expect_audio)
        for cfg in self._configs.values():
            if self._ts is not None:
                self._ts.mux(cfg)
            elif self._mp4 is not None:
                self._mp4.add(cfg)

    def _open_segment(self, t: int, wall_clock: float, *, independent: bool) -> None:
        self._ensure_muxer()
        init_id = 0
        if self._mp4 is not None:
            if self._mp4.config_version != self._init_version:
                self._init_version = self._mp4.config_version
                self._inits[self._init_id] = self._mp4.init_segment()
            init_id = self._init_id
        seg = Segment(
            msn=self._next_msn,
            start_ms=t,
            wall_clock=wall_clock,
            discontinuity=self._pending_discontinuity and self._next_msn > 0,
            independent=independent,
            init_id=init_id,
        )
        self._pending_discontinuity = False
        self._next_msn += 1
        if self._ts is not None:
            seg.chunks.append(self._ts.start_segment())
        self.current = seg
        self._part_start = t
        self._part_independent = independent

    def _maybe_cut(self, frame: Frame, wall_clock: float, out: list[Published]) -> None:
        cur = self.current
        if cur is None:
            return
        t = frame.timestamp
        elapsed = t - cur.start_ms
        key = frame.keyframe if self.expect_video else True
        if self._target_ms == 0 and key and self.expect_video:
            # Auto target: the first GOP's length.
            if self._first_gop_start is None:
                self._first_gop_start = cur.start_ms
            if t > self._first_gop_start:
                self._target_ms = min(max(t - self._first_gop_start, AUTO_TARGET_MIN_MS), AUTO_TARGET_MAX_MS)
        target = self._target_ms or (AUTO_TARGET_MIN_MS if self.expect_video else AUDIO_ONLY_TARGET_MS)
        # A changed decoder config needs a new init segment, so a new fMP4 segment at once.
        new_init = self._mp4 is not None and self._mp4.config_version != self._init_version
        if (key and (elapsed >= target or new_init)) or elapsed >= self.config.max_segment_ms:
            self._close_segment(t, out)
            self._open_segment(t, wall_clock, independent=key)
            return
        if self.parts_enabled and t > self._part_start:
            interval = max(self._video_intervals) if self.expect_video else self._audio_interval
            if t - self._part_start + interval > self.config.part_target_ms:
                self._close_part(t, out)
                self._part_start = t
                self._part_independent = key

    def _close_part(self, end_ms: int, out: list[Published]) -> None:
        cur = self.current
        if cur is None or self._mp4 is None:
            return
        data = self._mp4.fragment(end_ms)
        if data is None:
            return
        part = Part(
            len(cur.parts), self._part_start, max(end_ms - self._part_start, 1), self._part_independent, data
        )
        cur.parts.append(part)
        if self.parts_enabled:
            self._max_part_ms = max(self._max_part_ms, part.duration_ms)
        if self.parts_enabled:
            out.append(Published(cur.msn, part.index))

    def _close_segment(self, end_ms: int, out: list[Published]) -> None:
        cur = self.current
        if cur is None:
            return
        if self._mp4 is not None:
            self._close_part(end_ms, out)
            cur.data = b"".join(p.data for p in cur.parts)
            if not self.parts_enabled:
                cur.parts = []
        else:
            cur.data = b"".join(cur.chunks)
            cur.chunks = []
        # A frame a little earlier than the current part's start (the hub clamps per media
        # kind, so video may trail audio) closes the last part at its 1 ms minimum: the
        # segment then lasts as long as its parts, so EXTINF equals the parts' sum.
        parts_ms = sum(p.duration_ms for p in cur.parts)
        cur.duration_ms = max(end_ms - cur.start_ms, parts_ms, 1)
        cur.complete = True
        self._max_duration_ms = max(self._max_duration_ms, cur.duration_ms)
        self.current = None
        if not cur.data:
            return  # nothing was muxed (e.g. only frames of an unexpected codec)
        self.segments.append(cur)
        out.append(Published(cur.msn, None))
        self._trim()

    def _trim(self) -> None:
        cfg = self.config
        keep = max(cfg.window_segments, 1) + max(cfg.retain_segments, 0)
        while len(self.segments) > keep:
            self._drop_oldest()
        # A high-bitrate stream with long GOPs: bound the bytes too, oldest first.
        while len(self.segments) > 1 and self.bytes_held > cfg.max_window_bytes:
            self._drop_oldest()
            self.evicted_for_bytes += 1
        # Part bytes only for segments whose parts are still listed.
        for seg in list(self.segments)[: max(len(self.segments) - cfg.part_segments, 0)]:
            seg.parts = []
        live = {s.init_id for s in self.segments}
        if self.current is not None:
            live.add(self.current.init_id)
        live.add(self._init_id)
        for init_id in [i for i in self._inits if i not in live]:
            del self._inits[init_id]

    def _drop_oldest(self) -> None:
        if self.segments.popleft().discontinuity:
            self._dropped_discontinuities += 1

    def _estimated_end(self) -> int:
        last = max(self._last_ts.values()) if self._last_ts else 0
        step = self._last_video_interval if self.expect_video else self._audio_interval
        return last + step

    def _discontinuity(self, out: list[Published]) -> None:
        self.discontinuities += 1
        if self.current is not None:
            self._close_segment(self._estimated_end(), out)
        self._pending_discontinuity = True
        self._last_ts.clear()
