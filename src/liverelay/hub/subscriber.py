"""The reading side of a stream: one bounded queue per viewer, used only while it is needed.

A viewer whose sink gives a `deliver` callable (set_waker) and keeps up is *in step*: the
stream collects one batch for all such viewers and hands each the same list at each flush
(Stream._flush_batch), so it costs nothing per frame and one call per flush. Any other
viewer (joining with its burst, behind its socket, skipping to a keyframe, in pull mode)
has its own queue: per frame one list append and a few comparisons (offer); its writer
is woken at most every MediaSettings.viewer_flush_ms of media, and read()/take() hand it
everything queued so it sends it with one socket write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ..media.frame import Frame, FrameKind
from .keys import StreamKey
from .protocols import SubscriberHost

log = logging.getLogger("liverelay.hub")

# Per-frame bookkeeping cost charged against the queue bound (tag/chunk headers).
FRAME_OVERHEAD = 15
# Default for MediaSettings.viewer_flush_ms: a writer is woken at most once per this
# much media time (plus at codec headers, metadata and end of stream): ~20 socket
# writes a second per viewer instead of one per frame, for at most this much latency.
COALESCE_MS = 50
MAX_HELD_FRAMES = 4

_VIDEO = FrameKind.VIDEO
_AUDIO = FrameKind.AUDIO

# A sink's batch writer (push mode, in step): True when the batch was written (or the
# client is gone and the sink will close the subscriber), False when the sink cannot take
# it now (its socket is backed up): the subscriber then queues it and leaves the step.
Deliver = Callable[[list[Frame]], bool]


class Subscriber:
    """A viewer of one stream. Created by Hub.play(); the sink calls read() in a loop."""

    # One per viewer: slots keep thousands of viewers cheap (no per-instance dict).
    __slots__ = (
        "_allowance",
        "_caught_up",
        "_deliver",
        "_flush_at",
        "_flush_ms",
        "_held",
        "_limit",
        "_max_skips",
        "_queue",
        "_queued_bytes",
        "_ready",
        "_signalled",
        "_skips_in_row",
        "_started_mono",
        "_waiting_keyframe",
        "_waker",
        "bytes_out",
        "end_reason",
        "ended",
        "key",
        "on_drop",
        "protocol",
        "query",
        "remote",
        "skips",
        "started_at",
        "stream",
    )

    def __init__(
        self,
        stream: SubscriberHost,
        key: StreamKey,
        *,
        protocol: str,
        remote: str,
        query: str,
        queue_bytes: int,
        max_skips: int,
        flush_ms: int = COALESCE_MS,
    ) -> None:
        # What the subscriber reads; sinks look at has_audio/has_video when they start.
        self.stream = stream
        self.key = key
        self.protocol = protocol
        self.remote = remote
        self.query = query
        self.started_at = time.time()
        self._started_mono = time.monotonic()
        # A list, not a deque: take() hands the whole list over and starts a new one.
        self._queue: list[Frame] = []
        self._queued_bytes = 0
        self._limit = queue_bytes
        # The join burst (GOP cache) may exceed the steady-state bound once.
        self._allowance = queue_bytes
        self._max_skips = max_skips
        # Made on the first read(): a push-mode viewer never waits on it.
        self._ready: asyncio.Event | None = None
        self._signalled = False  # what the Event would hold while it is not made yet
        self._flush_ms = flush_ms
        self._flush_at = 0  # media time at which a queued frame wakes the writer
        self._held = 0  # frames queued since the writer was last woken
        self._waiting_keyframe = False
        self._skips_in_row = 0
        # A keyframe was queued outside a skip: if the viewer reads it, it kept up for a GOP.
        self._caught_up = False
        self.skips = 0
        self.bytes_out = 0
        self.ended = False  # no more frames will be queued
        self.end_reason: str | None = None
        # Called once when the hub ends this viewer for being too slow, so the sink
        # can abort a socket write that may be blocked on a reader that stopped.
        self.on_drop: Callable[[], None] | None = None
        self._waker: Callable[[], None] | None = None
        self._deliver: Deliver | None = None

    # -- hub side ---------------------------------------------------------------

    def start(self, prefix: list[Frame], waiting_keyframe: bool) -> None:
        """Called once by the stream: the join burst, and whether a keyframe must come first."""
        self._waiting_keyframe = waiting_keyframe
        if prefix:
            self._queue.extend(prefix)
            self._queued_bytes = sum(len(f.payload) + FRAME_OVERHEAD for f in prefix)
            self._allowance = self._limit + self._queued_bytes
            self._set_ready()

    def push(self, frame: Frame) -> None:
        """Queue one outgoing frame (hot path: called for every frame and every viewer)."""
        if self._waiting_keyframe:
            if frame.kind is _VIDEO and frame.keyframe:
                self._waiting_keyframe = False
                for header in self.stream.resume_prefix(frame):
                    self._append(header)
            elif self.stream.has_video or frame.kind is _VIDEO:
                return
            else:
                self._waiting_keyframe = False  # audio-only: any frame is a start
        elif frame.keyframe and frame.kind is _VIDEO:
            self._caught_up = True
        self._append(frame)

    def offer(self, frame: Frame, cost: int, quiet: bool, urgent: bool, video_key: bool) -> None:
        """push() with the per-frame facts worked out once by the stream for all its viewers
        (hot path: one call per frame and viewer). cost = len(payload) + FRAME_OVERHEAD;
        quiet: audio that never wakes the writer (see _append); urgent: a codec header,
        metadata or keyframe, which always wakes it; video_key: a video keyframe."""
        if self._waiting_keyframe:
            self.push(frame)  # rare: joining or skipping to a keyframe
            return
        if video_key:
            self._caught_up = True
        self._queue.append(frame)
        queued = self._queued_bytes + cost
        self._queued_bytes = queued
        if queued > self._allowance:
            self._overflow()
            return
        if quiet:
            return
        held = self._held + 1
        self._held = held
        if urgent or held >= MAX_HELD_FRAMES or frame.timestamp >= self._flush_at:
            self._wake()

    def _append(self, frame: Frame) -> None:
        self._queue.append(frame)
        self._queued_bytes += len(frame.payload) + FRAME_OVERHEAD
        if self._queued_bytes > self._allowance:
            self._overflow()
            return
        # Wake the writer only every flush_ms of media: a socket write costs far more
        # than its bytes, so fewer, larger writes. Audio of a stream with video waits for
        # the next video frame. Keyframes, codec headers and metadata wake at once (rare),
        # and a source whose timestamps do not advance still wakes every few frames.
        if frame.kind is _AUDIO and self.stream.has_video and not frame.config and self._flush_ms:
            return
        self._held += 1
        if (
            frame.timestamp >= self._flush_at
            or self._held >= MAX_HELD_FRAMES
            or frame.config
            or frame.keyframe  # a player waiting to start must not wait for us
        ):
            self._wake()

    def _set_ready(self) -> None:
        ready = self._ready
        if ready is not None:
            ready.set()
        else:
            self._signalled = True

    def _wake(self) -> None:
        waker = self._waker
        if waker is None:
            self._set_ready()
            return
        try:
            waker()
        except Exception:  # a sink's bug must not break the fan-out to the others
            log.exception("waker of %r failed", self)

    def flush(self) -> None:
        """The source paused: wake the writer for whatever is held."""
        if self._queue:
            self._wake()

    # -- in step with the stream (Stream._flush_batch) ------------------------------

    def can_step(self) -> bool:
        """Called by the stream at a flush: may this viewer join the shared batch? It
        must be a push-mode viewer with a batch writer, not skipping and not ended,
        and must have written everything queued (it is woken here to do so)."""
        if self._deliver is None or self._waiting_keyframe or self.ended:
            return False
        if self._queue:
            self._wake()  # the writer takes and writes it, unless its socket is backed up
            if self._queue or self.ended:
                return False
        return True

    @property
    def batch_writer(self) -> Deliver | None:
        """The sink's batch writer while in push mode (the stream calls it directly)."""
        return self._deliver

    def step_left(self, batch: list[Frame]) -> None:
        """Out of step (the writer could not take `batch`, or the sink left push mode):
        `batch` starts the viewer's own queue again, under the usual bound."""
        if not batch:
            return
        self._queue.extend(batch)
        self._queued_bytes += sum(len(f.payload) for f in batch) + FRAME_OVERHEAD * len(batch)
        self._held = 0
        self._flush_at = batch[-1].timestamp + self._flush_ms
        if self._queued_bytes > self._allowance:
            self._overflow()

    def step_keyframe(self) -> None:
        """The viewer in step was sent a batch with a keyframe: it kept up for a GOP."""
        self._skips_in_row = 0

    def _overflow(self) -> None:
        self._queue = []
        self._queued_bytes = 0
        self._allowance = self._limit
        self._caught_up = False
        self.skips += 1
        self._skips_in_row += 1
        if self._skips_in_row > self._max_skips:
            log.info(
                "viewer %s of %s dropped: too slow (%d skips in a row)",
                self.remote,
                self.key,
                self._skips_in_row,
            )
            self.end("slow")
            self.stream.subscriber_dropped(self)
            if self.on_drop is not None:
                try:
                    self.on_drop()
                except Exception:  # a sink's hook must not break the fan-out
                    log.exception("on_drop hook failed")
        else:
            self._waiting_keyframe = True

    def end(self, reason: str) -> None:
        """No more frames (told by the stream, or on a drop): read() drains what is queued
        (EOF) or nothing (slow), then returns []."""
        if self.ended:
            return
        self.ended = True
        self.end_reason = reason
        if reason == "slow":
            self._queue = []
            self._queued_bytes = 0
        self._set_ready()
        if self._waker is not None:
            self._wake()

    # -- sink side --------------------------------------------------------------

    async def read(self) -> list[Frame]:
        """Everything queued (waits while empty); [] at the end of the stream."""
        ready = self._ready
        if ready is None:
            ready = self._ready = asyncio.Event()
            if self._signalled:
                ready.set()
        while not (self._queue and ready.is_set()):
            if self.ended:
                if self._queue:
                    break
                return []
            ready.clear()
            await ready.wait()
        return self.take()

    def take(self) -> list[Frame]:
        """Everything queued now, without waiting ([] when nothing is)."""
        batch = self._queue
        if self._waker is None:  # only read() waits on it; push mode skips the call
            if self._ready is not None:
                self._ready.clear()
            else:
                self._signalled = False
        if not batch:
            return []
        self._queue = []
        self._held = 0
        self._flush_at = batch[-1].timestamp + self._flush_ms
        self._queued_bytes = 0
        self._allowance = self._limit
        if self._caught_up:
            self._skips_in_row = 0
            self._caught_up = False
        elif not self.stream.has_video and not self._waiting_keyframe:
            self._skips_in_row = 0
        return batch

    def set_waker(self, waker: Callable[[], None] | None, deliver: Deliver | None = None) -> None:
        """Push mode: the hub calls waker() (synchronously, from the fan-out) where it would
        wake read(): when frames are worth sending and at the end. The sink then take()s
        and writes without a task switch per viewer. waker must not raise or block.
        With `deliver` too, the viewer may go in step (see the module doc): the stream
        then calls deliver(batch) at each flush instead of queueing frame by frame.
        set_waker(None) goes back to pull mode (and out of step)."""
        self._waker = waker
        if deliver is None and self._deliver is not None:
            self.stream.leave_step(self)
        self._deliver = deliver if waker is not None else None

    def add_bytes_out(self, n: int) -> None:
        """Sinks report what they wrote, for stats and /metrics (the stream sums its viewers'
        counters when asked, so this stays one addition on the hot path)."""
        self.bytes_out += n

    def close(self) -> None:
        """The sink is done (client left, write failed): leave the stream. Idempotent."""
        if not self.ended:
            self.end("closed")
        self.stream.remove_subscriber(self)

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    @property
    def queued_frames(self) -> int:
        return len(self._queue)

    @property
    def duration_s(self) -> float:
        return time.monotonic() - self._started_mono

    def __repr__(self) -> str:
        return f"Subscriber({self.key}, {self.protocol}, {self.remote})"
