"""One live stream: its source (a Publication), its viewers, and its timeline.

The timestamp maths (monotonic outgoing timeline, rebasing across a source change,
jumps and clamps) is hub/timeline.py; this module applies it: after a source change
(Publication.discontinuity() or a takeover) incoming frames are dropped until a video
keyframe (SpliceGate), then the sequence headers (which may have changed) are sent
again before it, and viewers keep their connections.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..config import MediaSettings
from ..media.frame import Frame, FrameKind
from .gop import GopCache
from .keys import SourceKind, StreamKey
from .protocols import StreamOwner
from .subscriber import FRAME_OVERHEAD, MAX_HELD_FRAMES, Deliver, Subscriber
from .timeline import SpliceGate, Timeline

log = logging.getLogger("liverelay.hub")

BITRATE_WINDOW_S = 5
# Quiet frames (audio between video frames) held in the shared batch before it is
# flushed anyway: bounds the batch when a stream's video stops and its audio goes on.
MAX_BATCH_FRAMES = 64
# Frames held for the viewers go out at the latest this many viewer_flush_ms after the
# first of them was held (the source paused, or its video stopped and audio goes on).
IDLE_FLUSH_FACTOR = 2

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
            self.stream.ingest(frame)

    def write_run(self, frames: list[Frame]) -> None:
        """Hand the frames of one network read to the hub in one call (a relay pull). The
        frames are handed over: made for this call and kept by no one else, so the hub
        may restamp them in place instead of copying each onto the stream's timeline."""
        if self._active:
            self.stream.ingest_run(frames)

    def set_metadata(self, payload: bytes) -> None:
        """Set the onMetaData body (AMF0, '@setDataFrame' already stripped)."""
        if self._active:
            self.stream.ingest_data(Frame(_DATA, 0, payload), is_metadata=True)

    def discontinuity(self) -> None:
        """The next frames come from a new origin: splice at its first keyframe, keep viewers."""
        if self._active:
            self.stream.begin_splice("discontinuity")

    def close(self, reason: str = "closed") -> None:
        """The source is gone: viewers get EOF after what is queued. Idempotent."""
        if self._active:
            self._active = False
            self.stream.source_closed(self, reason)

    def preempt(self) -> None:
        """Taken over by a better source (Hub.publish): writes are ignored from now on."""
        self._active = False

    def __repr__(self) -> str:
        return f"Publication({self.key}, {self.kind.value}, {self.owner!r})"


class Stream:
    def __init__(self, owner: StreamOwner, key: StreamKey, settings: MediaSettings) -> None:
        self._owner = owner
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
        # Internal readers (the HLS muxer): fanned out to like viewers, but not viewers,
        # so viewer counts (API, metrics, the V3 linger) leave them out.
        self._internal: set[Subscriber] = set()
        self._count_only: set[Subscriber] = set()  # viewers that get no frames (HLS sessions)
        self._fanout_to: tuple[Subscriber, ...] = ()
        # Fan-out in two groups. Viewers "in step" (push mode with a batch writer, all
        # caught up) share one batch: per frame one append here, per flush one call per
        # viewer with the same list (see _flush_batch). The others (joining, behind,
        # skipping, pull mode, internal readers) get each frame in their own queue.
        self._individual: tuple[Subscriber, ...] = ()
        self._step: dict[Subscriber, Deliver] = {}
        self._step_to: tuple[tuple[Subscriber, Deliver], ...] = ()
        self._batch: list[Frame] = []
        self._batch_held = 0
        self._batch_flush_at = 0
        self._batch_key = False  # the batch holds a video keyframe
        self._listeners: list[Callable[[int], Any]] = []
        self._timeline = Timeline()
        self._splice = SpliceGate()
        self._video_started = False
        self._pending_video_header: Frame | None = None
        self._pending_audio_header: Frame | None = None
        self._pending_metadata: Frame | None = None
        self._resume_cache: tuple[Frame, list[Frame]] | None = None
        # Flushes what is held when the source pauses: armed when a frame is held after a
        # flush, cancelled by the next flush, so a flowing stream never wakes the loop for it.
        self._idle_flush: asyncio.TimerHandle | None = None
        self._flush_ms = max(0, settings.viewer_flush_ms)
        # Longer than the flush cadence (flush_ms plus one video frame interval), so the
        # timer fires only when the source really pauses, not between two regular flushes.
        self._idle_flush_s = IDLE_FLUSH_FACTOR * self._flush_ms / 1000
        self._last_flush = 0.0  # monotonic time of the last flush of the shared batch
        self._in_run = False  # inside ingest_run: the run's end flushes and arms the timer
        self._run_flush = False  # a flush is due at the end of the run
        # Stats. Viewers count their own bytes and skips; what left is kept here.
        self.bytes_in = 0
        self.frames_in = 0
        self.frames_dropped = 0
        self.splices = 0
        self.viewer_drops = 0
        self._left_bytes_out = 0
        self._left_skips = 0
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
        return len(self._subscribers) - len(self._internal)

    @property
    def has_readers(self) -> bool:
        """Anything reads the stream, internal readers included (the hub keeps it while so)."""
        return bool(self._subscribers)

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
        return self._timeline.last_out

    @property
    def rebases(self) -> int:
        return self._timeline.rebases

    @property
    def bytes_out(self) -> int:
        """Bytes sent to this stream's viewers, those gone included."""
        return self._left_bytes_out + sum(sub.bytes_out for sub in self._subscribers)

    @property
    def viewer_skips(self) -> int:
        """Times a viewer of this stream skipped to the next keyframe."""
        return self._left_skips + sum(sub.skips for sub in self._subscribers)

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

    # -- source side (the Hub and the Publication) -------------------------------

    def set_source(self, pub: Publication) -> None:
        """`pub` writes this stream from now on (Hub.publish); a splice follows earlier media."""
        self.source = pub
        if self._timeline.last_out is not None:
            self.begin_splice("new source")

    def source_closed(self, pub: Publication, reason: str) -> None:
        """The Publication `pub` closed: if it is still the source, viewers get EOF."""
        if self.source is not pub:
            return
        self.source = None
        log.info("stream %s: source %s ended (%s)", self.key, pub.owner, reason)
        self._flush_batch()  # what the viewers in step have not been sent yet goes first
        for sub in list(self._subscribers):
            sub.end("eof")
            self._forget(sub)
        self._notify_viewers()
        self._owner.stream_idle(self)

    def begin_splice(self, why: str) -> None:
        """The next frames come from another origin: wait for its keyframe, then rebase."""
        self._timeline.restart()
        if self._timeline.last_out is None and not self.has_video:
            return  # nothing sent yet: the next frame simply starts the timeline
        self._splice.open()
        # Headers held from an origin that never reached its keyframe are stale now.
        self._pending_video_header = self._pending_audio_header = self._pending_metadata = None
        log.debug("stream %s: splice pending (%s)", self.key, why)

    def ingest(self, frame: Frame) -> None:
        """Rebase one incoming frame onto the stream timeline and fan it out."""
        self._count_in(1, len(frame.payload))
        self._accept(frame, False)

    def ingest_run(self, frames: list[Frame]) -> None:
        """`ingest` for the frames of one read, handed over (Publication.write_run): the
        counters are kept once per run, each frame is restamped in place, and the viewers'
        flush (if one is due) comes at the end of the run."""
        size = 0
        for frame in frames:
            size += len(frame.payload)
        self._count_in(len(frames), size)
        if not frames:
            return
        accept = self._accept
        self._in_run = True
        try:
            for frame in frames:
                accept(frame, True)
        finally:
            self._in_run = False
        # The frames of a read go out in one flush at its end: when the usual rule (an
        # urgent frame, viewer_flush_ms of media held) asked for one inside it, and when the
        # run spans half a flush interval or more (a coalesced read, ~40-80 ms of media).
        # The rule's flush point falls inside such a read, and the frames after it would
        # wait for the next read or for the idle-flush timer (armed and cancelled once per
        # read; at a pause, the tail waited the full timer). A run of a message or two (an
        # uncoalesced read) stays held by the usual rule. At most one flush per read.
        due = self._run_flush
        self._run_flush = False
        if self._flush_ms and frames[-1].timestamp - frames[0].timestamp >= self._flush_ms / 2:
            self._flush_all()
        elif due:
            self._flush_batch()
        self._watch_held()

    def _count_in(self, frames: int, size: int) -> None:
        self.frames_in += frames
        self.bytes_in += size
        now = int(time.monotonic())
        if now != self._rate_second:
            self._roll_rate(now)
        self._rate_bytes += size

    def _accept(self, frame: Frame, owned: bool) -> None:
        """One counted frame: headers, splice, GOP, fan-out. `owned`: it may be restamped in place."""
        kind = frame.kind
        if kind is _DATA:
            self.ingest_data(frame)
            return
        if kind is _VIDEO:
            self.has_video = True
        else:
            self.has_audio = True
        splicing = self._splice.pending
        if frame.config:
            if splicing:
                if kind is _VIDEO:
                    self._pending_video_header = frame
                else:
                    self._pending_audio_header = frame
                return
            out = self._stamp(frame, owned)
            if kind is _VIDEO:
                self._video_header = out
            else:
                self._audio_header = out
            self._resume_cache = None
            self._fanout(out)
            return
        if splicing:
            if self._splice.drops(frame, self.has_video):
                self.frames_dropped += 1
                return
            if self.has_video and not (kind is _VIDEO and frame.keyframe):
                log.info("stream %s: no keyframe from the new source, resuming without one", self.key)
                self._video_started = False
            self._resume_at(frame)
            return
        if kind is _VIDEO:
            if frame.keyframe:
                self._video_started = True
            elif not self._video_started:
                self.frames_dropped += 1  # undecodable without the keyframe before it
                return
        out = self._stamp(frame, owned)
        self.gop.add(out, self.has_video)
        self._fanout(out)

    def ingest_data(self, frame: Frame, *, is_metadata: bool = False) -> None:
        """A data frame (onMetaData or other): kept as metadata, sent at the current time."""
        is_metadata = is_metadata or frame.payload.startswith(_ON_METADATA)
        if self._splice.pending:
            if is_metadata:
                self._pending_metadata = frame
            return
        out = frame.with_timestamp(self._timeline.last_out or 0)
        if is_metadata:
            self._metadata = out
        self._fanout(out)

    def _resume_at(self, frame: Frame) -> None:
        """The splice ends at `frame`: re-send what changed, then carry on from it."""
        self._splice.close()
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
            self._video_header = self._timeline.place_header(video_header, ts)
            self._fanout(self._video_header)
        if audio_header is not None:
            self._audio_header = self._timeline.place_header(audio_header, ts)
            self._fanout(self._audio_header)
        self._resume_cache = None
        if frame.kind is _VIDEO and not frame.keyframe:
            return  # gave up waiting for a keyframe; video resumes at the next one
        self.gop.add(out, self.has_video)
        self._fanout(out)

    def _stamp(self, frame: Frame, owned: bool = False) -> Frame:
        timeline = self._timeline
        rebases = timeline.rebases
        ts = frame.timestamp  # (an owned frame is restamped in place)
        out = timeline.stamp(frame, owned)
        if timeline.rebases != rebases:
            log.info("stream %s: timestamp jump at %d ms, rebased", self.key, ts)
        return out

    # -- viewer side ------------------------------------------------------------

    def _fanout(self, frame: Frame) -> None:
        if not self._fanout_to:
            return
        # What Subscriber.push would work out per viewer, once per frame.
        kind = frame.kind
        config = frame.config
        quiet = kind is _AUDIO and self.has_video and not config and self._flush_ms > 0
        urgent = config or frame.keyframe
        video_key = frame.keyframe and kind is _VIDEO
        individual = self._individual
        if individual:
            cost = len(frame.payload) + FRAME_OVERHEAD
            for sub in individual:
                sub.offer(frame, cost, quiet, urgent, video_key)
        # The shared batch, flushed by the rule Subscriber._append applies to one queue.
        batch = self._batch
        batch.append(frame)
        if video_key:
            self._batch_key = True
        if quiet:
            if len(batch) >= MAX_BATCH_FRAMES:
                self._flush_batch()
        else:
            held = self._batch_held + 1
            self._batch_held = held
            if held >= MAX_HELD_FRAMES:
                self._flush_batch()
            elif urgent or frame.timestamp >= self._batch_flush_at:
                if self._in_run:
                    self._run_flush = True  # at the end of the run, with the rest of it
                else:
                    self._flush_batch()
        if not self._in_run:  # (a run's end does this once for the whole run)
            self._watch_held()

    def _flush_batch(self) -> None:
        """Send the shared batch to every viewer in step (the same list to each: their
        writers reuse one serialisation of it), then let caught-up viewers join the step."""
        batch = self._batch
        if batch:
            self._last_flush = time.monotonic()
            self._batch = []
            self._batch_held = 0
            self._batch_flush_at = batch[-1].timestamp + self._flush_ms
            keyed = self._batch_key or not self.has_video
            self._batch_key = False
            left: list[Subscriber] = []
            for sub, deliver in self._step_to:
                if not deliver(batch):
                    left.append(sub)
                elif keyed:
                    sub.step_keyframe()
            for sub in left:
                self._unstep(sub, batch)
        individual = self._individual
        if individual:
            joined = [sub for sub in individual if sub.can_step()]
            if joined:
                for sub in joined:
                    writer = sub.batch_writer
                    if writer is not None and sub in self._subscribers:
                        self._step[sub] = writer
                self._regroup()
        timer = self._idle_flush
        if timer is not None and not self._individual:
            # Nothing is held any more (a viewer with a queue of its own may hold frames).
            timer.cancel()
            self._idle_flush = None

    def _unstep(self, sub: Subscriber, pending: list[Frame]) -> None:
        """`sub` leaves the step; `pending` (what it was not sent) starts its own queue."""
        if self._step.pop(sub, None) is not None:
            self._regroup()
            sub.step_left(pending)

    def leave_step(self, sub: Subscriber) -> None:
        """The sink of `sub` left push mode: it gets its own queue again, starting with
        the part of the shared batch not flushed yet."""
        self._unstep(sub, list(self._batch))

    def _regroup(self) -> None:
        count_only = self._count_only  # HLS sessions: counted, never fanned out to
        subs = tuple(s for s in self._subscribers if s not in count_only)
        step = self._step
        self._fanout_to = subs
        self._individual = tuple(s for s in subs if s not in step) if step else self._fanout_to
        self._step_to = tuple(step.items())

    # Subscribers hold frames until viewer_flush_ms of media has accumulated; when the
    # source pauses (or a test writes one frame), this flushes what is held. The timer is
    # armed by the first frame held after a flush and cancelled by the next flush: a
    # flowing stream flushes every ~viewer_flush_ms and the timer never fires (no loop
    # wake-up per stream per flush interval); it fires only when nothing flushed in time.
    # (A run, the frames of one relay read, arms it once at its end, not per frame.)
    # While a viewer has a queue of its own (joining, behind, pull mode: the HLS muxer)
    # the timer is not cancelled; it then flushes only once the stream has not flushed
    # for its interval, and otherwise waits for the rest of it.
    def _watch_held(self) -> None:
        """Arm the idle flush if frames are held for the viewers and it is not armed yet."""
        if self._idle_flush is None and self._flush_ms and (self._batch or self._individual):
            self._arm_idle_flush(self._idle_flush_s)

    def _arm_idle_flush(self, delay: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (synchronous use): nothing may wait
            self._flush_all()
            return
        self._idle_flush = loop.call_later(delay, self._on_idle_flush)

    def _on_idle_flush(self) -> None:
        self._idle_flush = None
        idle = time.monotonic() - self._last_flush
        if idle < self._idle_flush_s * 0.9 and self._individual:
            self._arm_idle_flush(self._idle_flush_s - idle)  # flowing: flushed lately
            return
        self._flush_all()

    def _flush_all(self) -> None:
        for sub in self._individual:
            sub.flush()
        self._flush_batch()

    def subscribe(self, *, protocol: str, remote: str, query: str, counted: bool = True) -> Subscriber:
        """A new reader of the stream. `counted=False`: an internal reader (the HLS muxer)
        that gets the frames but is no viewer: not in viewer_count, the per-protocol counts
        or what viewer listeners are told."""
        media = self.settings
        sub = Subscriber(
            self,
            self.key,
            protocol=protocol,
            remote=remote,
            query=query,
            queue_bytes=media.viewer_queue_bytes,
            max_skips=media.viewer_max_skips,
            flush_ms=self._flush_ms,
        )
        prefix, waiting = self._join_prefix()
        sub.start(prefix, waiting)
        self._subscribers[sub] = None
        self._regroup()
        if not counted:
            self._internal.add(sub)
            return sub
        self._owner.viewer_joined(sub)
        self._notify_viewers()
        return sub

    def count_only(self, sub: Subscriber) -> None:
        """`sub` stays a viewer (counted, ended with the stream) but gets no more frames:
        an HLS session, whose media the stream's one HLS muxer reads instead."""
        if sub in self._subscribers:
            self._count_only.add(sub)
            self._step.pop(sub, None)
            self._regroup()

    def _join_prefix(self) -> tuple[list[Frame], bool]:
        """What a new viewer gets at once, and whether it must then wait for a keyframe."""
        gop = self.gop.snapshot()
        last_out = self._timeline.last_out
        if self.has_video and not (self.gop.keyed and gop):
            prefix = [self._metadata.with_timestamp(last_out or 0)] if self._metadata else []
            return prefix, last_out is not None
        # Headers go no later than the earliest GOP frame (audio may trail the keyframe a
        # little) nor than what the stream already sent of their kind (what follows is later).
        ts = min(f.timestamp for f in gop) if gop else (last_out or 0)
        prefix = [self._metadata.with_timestamp(ts)] if self._metadata else []
        prefix += self._headers_at(ts)
        prefix.extend(gop)
        return prefix, False

    def _headers_at(self, ts: int) -> list[Frame]:
        timeline = self._timeline
        return [
            f.with_timestamp(timeline.header_time(f, ts))
            for f in (self._video_header, self._audio_header)
            if f is not None
        ]

    def resume_prefix(self, keyframe: Frame) -> list[Frame]:
        """Headers to send before the keyframe a skipping viewer resumes at (shared by all)."""
        cached = self._resume_cache
        if cached is not None and cached[0] is keyframe:
            return cached[1]
        frames = self._headers_at(keyframe.timestamp)
        self._resume_cache = (keyframe, frames)
        return frames

    def remove_subscriber(self, sub: Subscriber) -> None:
        """The viewer left (its sink closed it): stop fanning out to it. Idempotent."""
        internal = sub in self._internal
        if self._forget(sub):
            if not internal:
                self._notify_viewers()
            self._owner.stream_idle(self)

    def subscriber_dropped(self, sub: Subscriber) -> None:
        """The viewer was too slow and has ended: count it, then let it go."""
        self.viewer_drops += 1
        self.remove_subscriber(sub)

    def _forget(self, sub: Subscriber) -> bool:
        if sub not in self._subscribers:
            return False
        del self._subscribers[sub]
        self._count_only.discard(sub)
        self._step.pop(sub, None)
        self._regroup()
        self._left_bytes_out += sub.bytes_out
        self._left_skips += sub.skips
        if sub in self._internal:
            self._internal.discard(sub)
        else:
            self._owner.viewer_left(sub)
        return True

    def _notify_viewers(self) -> None:
        count = self.viewer_count
        for callback in list(self._listeners):
            try:
                callback(count)
            except Exception:  # a listener's bug must not break the data plane
                log.exception("viewer listener of %s failed", self.key)

    def close(self, reason: str) -> None:
        """End the stream (hub shutdown): the source is closed and viewers get EOF."""
        if self._idle_flush is not None:
            self._idle_flush.cancel()
            self._idle_flush = None
        if self.source is not None:
            self.source.close(reason)
        self._flush_batch()
        for sub in list(self._subscribers):
            sub.end("eof")
            self._forget(sub)
        self._notify_viewers()

    def _roll_rate(self, now: int) -> None:
        if self._rate_second and now != self._rate_second:
            self._rate_history.append((self._rate_second, self._rate_bytes))
            self._rate_bytes = 0
        self._rate_second = now

    def __repr__(self) -> str:
        return f"Stream({self.key}, viewers={self.viewer_count}, source={self.source!r})"
