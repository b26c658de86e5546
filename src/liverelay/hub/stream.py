"""One live stream: its source (a Publication), its viewers, and its timeline.

Timeline rules (the stream's outgoing timestamps never go back, whatever the source):
- the first frame of the stream lands at 0;
- after a source change (Publication.discontinuity() or a takeover) incoming frames
  are dropped until a video keyframe (if the stream has video), then the offset is
  chosen so that keyframe lands one frame duration after the last sent timestamp,
  and the sequence headers (which may have changed) are sent again before it;
- within one source, a timestamp going back a little is clamped (per media kind), and
  a jump of more than JUMP_MS either way is rebased like a splice (origin restarts,
  32-bit wrap-around).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..config import MediaSettings
from ..media.frame import Frame, FrameKind
from .gop import GopCache
from .keys import SourceKind, StreamKey
from .subscriber import COALESCE_MS, Subscriber

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger("liverelay.hub")

JUMP_MS = 3000
DEFAULT_FRAME_MS = 40
# A splice waits for a video keyframe at most this long (source time) before it
# gives up and resumes on whatever comes (e.g. the new origin has no video).
SPLICE_MAX_WAIT_MS = 6000
SPLICE_MAX_WAIT_FRAMES = 1000
BITRATE_WINDOW_S = 5

_VIDEO = FrameKind.VIDEO
_AUDIO = FrameKind.AUDIO
_DATA = FrameKind.DATA
# AMF0 string "onMetaData" (marker 0x02, u16 length 10).
_ON_METADATA = b"\x02\x00\x0aonMetaData"


class Publication:
    """The writing side of a stream, held by a publisher or a relay."""

    def __init__(self, stream: Stream, kind: SourceKind, owner: str) -> None:
        self.stream = stream
        self.key = stream.key
        self.kind = kind
        self.owner = owner
        self.started_at = time.time()
        self._active = True
        # Called (no arguments) when a publisher or a fixed relay takes this (RELAY_PLAY)
        # stream over; writes are ignored after.
        self.on_preempted: Callable[[], None] | None = None

    @property
    def active(self) -> bool:
        return self._active

    def write(self, frame: Frame) -> None:
        """Hand one frame to the hub (never blocks; ignored once closed or preempted)."""
        if self._active:
            self.stream._ingest(frame)

    def set_metadata(self, payload: bytes) -> None:
        """Set the onMetaData body (AMF0, '@setDataFrame' already stripped)."""
        if self._active:
            self.stream._ingest_data(Frame(_DATA, 0, payload), is_metadata=True)

    def discontinuity(self) -> None:
        """The next frames come from a new origin: splice at its first keyframe, keep viewers."""
        if self._active:
            self.stream._begin_splice("discontinuity")

    def close(self, reason: str = "closed") -> None:
        """The source is gone: viewers get EOF after what is queued. Idempotent."""
        if self._active:
            self._active = False
            self.stream._source_closed(self, reason)

    def _preempt(self) -> None:
        self._active = False

    def __repr__(self) -> str:
        return f"Publication({self.key}, {self.kind.value}, {self.owner!r})"


class Stream:
    def __init__(self, hub: Hub, key: StreamKey, settings: MediaSettings) -> None:
        self.hub = hub
        self.key = key
        self.settings = settings
        self.created_at = time.time()
        self.source: Publication | None = None
        self.gop = GopCache(
            max_bytes=settings.gop_max_bytes, max_ms=settings.gop_max_ms, enabled=settings.gop_cache
        )
        self.has_video = False
        self.has_audio = False
        self._metadata: Frame | None = None
        self._video_header: Frame | None = None
        self._audio_header: Frame | None = None
        self._subscribers: dict[Subscriber, None] = {}
        self._fanout_to: tuple[Subscriber, ...] = ()
        self._listeners: list[Callable[[int], Any]] = []
        # Timeline.
        self._offset: int | None = None
        self._last_out: int | None = None  # the highest timestamp sent so far
        self._last_kind_out: dict[FrameKind, int] = {}
        self._video_started = False
        self._frame_ms = DEFAULT_FRAME_MS
        self._last_video_in: int | None = None
        self._splicing = False
        self._splice_first_ts: int | None = None
        self._splice_dropped = 0
        self._pending_video_header: Frame | None = None
        self._pending_audio_header: Frame | None = None
        self._pending_metadata: Frame | None = None
        self._resume_cache: tuple[Frame, list[Frame]] | None = None
        self._idle_flush: asyncio.TimerHandle | None = None
        self._flush_ms = max(0, getattr(settings, "viewer_flush_ms", COALESCE_MS))
        self._idle_flush_s = max(self._flush_ms, 1) / 1000
        self._last_fanout = 0.0
        # Stats.
        self.bytes_in = 0
        self.bytes_out = 0
        self.frames_in = 0
        self.frames_dropped = 0
        self.splices = 0
        self.rebases = 0
        self._rate_second = 0
        self._rate_bytes = 0
        self._rate_history: deque[tuple[int, int]] = deque(maxlen=BITRATE_WINDOW_S + 1)

    # -- public view ------------------------------------------------------------

    @property
    def has_source(self) -> bool:
        return self.source is not None

    @property
    def source_kind(self) -> SourceKind | None:
        return self.source.kind if self.source is not None else None

    @property
    def owner(self) -> str | None:
        return self.source.owner if self.source is not None else None

    @property
    def viewer_count(self) -> int:
        return len(self._subscribers)

    @property
    def subscribers(self) -> tuple[Subscriber, ...]:
        return self._fanout_to

    @property
    def metadata(self) -> bytes | None:
        """The latest onMetaData body (AMF0), or None."""
        return self._metadata.payload if self._metadata is not None else None

    @property
    def video_header(self) -> Frame | None:
        return self._video_header

    @property
    def audio_header(self) -> Frame | None:
        return self._audio_header

    @property
    def last_timestamp(self) -> int | None:
        return self._last_out

    def add_viewer_listener(self, callback: Callable[[int], Any]) -> Callable[[], None]:
        """callback(viewer_count) on every change; returns a function that removes it."""
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    def bitrate(self) -> float:
        """Incoming bits per second over the last few whole seconds."""
        now = int(time.monotonic())
        self._roll_rate(now)
        total = sum(b for sec, b in self._rate_history if now - BITRATE_WINDOW_S <= sec < now)
        return total * 8 / BITRATE_WINDOW_S

    def stats(self) -> dict[str, Any]:
        return {
            "vhost": self.key.vhost,
            "app": self.key.app,
            "stream": self.key.name,
            "source_kind": self.source_kind.value if self.source_kind else None,
            "owner": self.owner,
            "started_at": self.source.started_at if self.source else None,
            "created_at": self.created_at,
            "viewers": self.viewer_count,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "frames_in": self.frames_in,
            "frames_dropped": self.frames_dropped,
            "bitrate_bps": self.bitrate(),
            "has_video": self.has_video,
            "has_audio": self.has_audio,
            "splices": self.splices,
            "rebases": self.rebases,
        }

    # -- source side ------------------------------------------------------------

    def _set_source(self, pub: Publication) -> None:
        self.source = pub
        if self._last_out is not None:
            self._begin_splice("new source")

    def _source_closed(self, pub: Publication, reason: str) -> None:
        if self.source is not pub:
            return
        self.source = None
        log.info("stream %s: source %s ended (%s)", self.key, pub.owner, reason)
        for sub in list(self._subscribers):
            sub._end("eof")
            self._remove_subscriber(sub, notify=False)
        self._notify_viewers()
        self.hub._maybe_remove(self)

    def _begin_splice(self, why: str) -> None:
        if self._last_out is None and not self.has_video:
            self._offset = None  # nothing sent yet: the next frame simply starts the timeline
            return
        self._splicing = True
        self._splice_first_ts = None
        self._splice_dropped = 0
        # Headers held from an origin that never reached its keyframe are stale now.
        self._pending_video_header = self._pending_audio_header = self._pending_metadata = None
        self._offset = None
        self._last_video_in = None
        log.debug("stream %s: splice pending (%s)", self.key, why)

    def _ingest(self, frame: Frame) -> None:
        """Rebase one incoming frame onto the stream timeline and fan it out."""
        self.frames_in += 1
        size = len(frame.payload)
        self.bytes_in += size
        now = int(time.monotonic())
        if now != self._rate_second:
            self._roll_rate(now)
        self._rate_bytes += size
        kind = frame.kind
        if kind is _DATA:
            self._ingest_data(frame)
            return
        if kind is _VIDEO:
            self.has_video = True
        else:
            self.has_audio = True
        if frame.config:
            if self._splicing:
                if kind is _VIDEO:
                    self._pending_video_header = frame
                else:
                    self._pending_audio_header = frame
                return
            out = self._stamp(frame)
            if kind is _VIDEO:
                self._video_header = out
            else:
                self._audio_header = out
            self._resume_cache = None
            self._fanout(out)
            return
        if self._splicing:
            if self.has_video and not (kind is _VIDEO and frame.keyframe):
                if self._splice_first_ts is None:
                    self._splice_first_ts = frame.timestamp
                self._splice_dropped += 1
                if (
                    frame.timestamp - self._splice_first_ts < SPLICE_MAX_WAIT_MS
                    and self._splice_dropped < SPLICE_MAX_WAIT_FRAMES
                ):
                    self.frames_dropped += 1
                    return
                log.info("stream %s: no keyframe from the new source, resuming without one", self.key)
                self._video_started = False
            self._splice(frame)
            return
        if kind is _VIDEO:
            if frame.keyframe:
                self._video_started = True
            elif not self._video_started:
                self.frames_dropped += 1  # undecodable without the keyframe before it
                return
        out = self._stamp(frame)
        self.gop.add(out, self.has_video)
        self._fanout(out)

    def _ingest_data(self, frame: Frame, *, is_metadata: bool = False) -> None:
        is_metadata = is_metadata or frame.payload.startswith(_ON_METADATA)
        if self._splicing:
            if is_metadata:
                self._pending_metadata = frame
            return
        out = frame.with_timestamp(self._last_out or 0)
        if is_metadata:
            self._metadata = out
        self._fanout(out)

    def _splice(self, frame: Frame) -> None:
        self._splicing = False
        self.splices += 1
        out = self._stamp(frame)
        ts = out.timestamp
        if frame.kind is _VIDEO and frame.keyframe:
            self._video_started = True
        if self._pending_metadata is not None:
            changed = self._metadata is None or self._metadata.payload != self._pending_metadata.payload
            self._metadata = self._pending_metadata.with_timestamp(ts)
            self._pending_metadata = None
            if changed:
                self._fanout(self._metadata)
        video_header = self._pending_video_header or self._video_header
        audio_header = self._pending_audio_header or self._audio_header
        self._pending_video_header = self._pending_audio_header = None
        if video_header is not None:
            self._video_header = video_header.with_timestamp(ts)
            self._last_kind_out[_VIDEO] = max(ts, self._last_kind_out.get(_VIDEO, ts))
            self._fanout(self._video_header)
        if audio_header is not None:
            self._audio_header = audio_header.with_timestamp(ts)
            self._last_kind_out[_AUDIO] = max(ts, self._last_kind_out.get(_AUDIO, ts))
            self._fanout(self._audio_header)
        self._resume_cache = None
        if frame.kind is _VIDEO and not frame.keyframe:
            return  # gave up waiting for a keyframe; video resumes at the next one
        self.gop.add(out, self.has_video)
        self._fanout(out)

    def _stamp(self, frame: Frame) -> Frame:
        ts = frame.timestamp
        kind = frame.kind
        last = self._last_out
        if kind is _VIDEO and not frame.config:
            prev = self._last_video_in
            if prev is not None and 0 < ts - prev <= 200:
                self._frame_ms = ts - prev
            self._last_video_in = ts
        if self._offset is None:
            self._offset = (0 if last is None else last + self._frame_ms) - ts
        out = ts + self._offset
        if last is not None and (out > last + JUMP_MS or out < last - JUMP_MS):
            if frame.config:
                # Some encoders send a new codec header stamped 0 mid-stream: place it
                # at the current time without moving the timeline.
                out = last
                self._last_kind_out[kind] = max(out, self._last_kind_out.get(kind, out))
                return frame.with_timestamp(out)
            self.rebases += 1
            log.info("stream %s: timestamp jump of %d ms, rebased", self.key, out - last)
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
        return frame.with_timestamp(out)

    # -- viewer side ------------------------------------------------------------

    def _fanout(self, frame: Frame) -> None:
        subscribers = self._fanout_to
        for sub in subscribers:
            sub.push(frame)
        if subscribers:
            self._last_fanout = time.monotonic()
            if self._idle_flush is None and self._flush_ms:
                self._arm_idle_flush(self._idle_flush_s)

    # Subscribers hold frames until viewer_flush_ms of media has accumulated; when the
    # source pauses (or a test writes one frame), this flushes what is held.
    def _arm_idle_flush(self, delay: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (synchronous use): nothing may wait
            self._flush_all()
            return
        self._idle_flush = loop.call_later(delay, self._on_idle_flush)

    def _on_idle_flush(self) -> None:
        self._idle_flush = None
        idle = time.monotonic() - self._last_fanout
        if idle >= self._idle_flush_s * 0.9:
            self._flush_all()
        elif self._fanout_to:
            self._arm_idle_flush(self._idle_flush_s - idle)

    def _flush_all(self) -> None:
        for sub in self._fanout_to:
            sub._flush()

    def subscribe(self, *, protocol: str, remote: str, query: str) -> Subscriber:
        media = self.settings
        sub = Subscriber(
            self,
            protocol=protocol,
            remote=remote,
            query=query,
            queue_bytes=media.viewer_queue_bytes,
            max_skips=media.viewer_max_skips,
            flush_ms=self._flush_ms,
        )
        prefix, waiting = self._join_prefix()
        sub._start(prefix, waiting)
        self._subscribers[sub] = None
        self._fanout_to = tuple(self._subscribers)
        self.hub._on_viewer_added(sub)
        self._notify_viewers()
        return sub

    def _join_prefix(self) -> tuple[list[Frame], bool]:
        """What a new viewer gets at once, and whether it must then wait for a keyframe."""
        gop = self.gop.snapshot()
        if self.has_video and not (self.gop.keyed and gop):
            prefix = [self._metadata.with_timestamp(self._last_out or 0)] if self._metadata else []
            return prefix, self._last_out is not None
        # Headers go no later than the earliest GOP frame (audio may trail the keyframe a
        # little) nor than what the stream already sent of their kind (what follows is later).
        ts = min(f.timestamp for f in gop) if gop else (self._last_out or 0)
        prefix = [self._metadata.with_timestamp(ts)] if self._metadata else []
        prefix += self._headers_at(ts)
        prefix.extend(gop)
        return prefix, False

    def _headers_at(self, ts: int) -> list[Frame]:
        last = self._last_kind_out
        return [
            f.with_timestamp(min(ts, last.get(f.kind, ts)))
            for f in (self._video_header, self._audio_header)
            if f is not None
        ]

    def _resume_prefix(self, keyframe: Frame) -> list[Frame]:
        """Headers to send before the keyframe a skipping viewer resumes at (shared by all)."""
        cached = self._resume_cache
        if cached is not None and cached[0] is keyframe:
            return cached[1]
        frames = self._headers_at(keyframe.timestamp)
        self._resume_cache = (keyframe, frames)
        return frames

    def _remove_subscriber(self, sub: Subscriber, *, notify: bool = True) -> None:
        if sub not in self._subscribers:
            return
        del self._subscribers[sub]
        self._fanout_to = tuple(self._subscribers)
        self.hub._on_viewer_removed(sub)
        if notify:
            self._notify_viewers()
            self.hub._maybe_remove(self)

    def _on_skip(self, sub: Subscriber) -> None:
        self.hub.viewer_skips += 1

    def _on_drop(self, sub: Subscriber) -> None:
        self.hub.viewer_drops += 1
        self._remove_subscriber(sub)

    def _notify_viewers(self) -> None:
        count = len(self._subscribers)
        for callback in list(self._listeners):
            try:
                callback(count)
            except Exception:  # a listener's bug must not break the data plane
                log.exception("viewer listener of %s failed", self.key)

    def _close(self, reason: str) -> None:
        if self._idle_flush is not None:
            self._idle_flush.cancel()
            self._idle_flush = None
        if self.source is not None:
            self.source.close(reason)
        for sub in list(self._subscribers):
            sub._end("eof")
            self._remove_subscriber(sub, notify=False)
        self._notify_viewers()

    def _roll_rate(self, now: int) -> None:
        if self._rate_second and now != self._rate_second:
            self._rate_history.append((self._rate_second, self._rate_bytes))
            self._rate_bytes = 0
        self._rate_second = now

    def __repr__(self) -> str:
        return f"Stream({self.key}, viewers={self.viewer_count}, source={self.source!r})"
