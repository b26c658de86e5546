"""The push-writer: one viewer's frames from the hub's fan-out straight into its socket.

Shared by the two connection-per-viewer outputs, RTMP play (servers/rtmp.py) and
HTTP-FLV (servers/http.py). Each gives its serialisation, a `frame.cache` key and a
`serialise(frame) -> bytes` that stores its result there, so a frame is serialised
once for every viewer that shares the key; and, for HTTP/1.1 chunked bodies, a `wrap`
for the transfer framing. Everything else is here, written once:

- the waker: the hub calls `wake()` synchronously from its fan-out (Subscriber push
  mode); the batch is `take()`n and handed to `transport.writelines` at once, with no
  task switch per viewer and batch (uvloop keeps references to unsent bytes, so a
  viewer costs no copy per frame);
- the batch writer: once the viewer has caught up, the stream hands every viewer in
  step the same batch at each flush (`deliver()`; hub/stream.py `_flush_batch`): the
  first viewer serialises it, the others reuse its pieces (one `writelines`, i.e. one
  writev, per viewer per flush, and no Python work per viewer per frame);
- the backlog check: past `backlog_bytes` in the transport buffer the writer stops
  taking frames and the viewer's task waits for the transport to drain; meanwhile
  frames pile up in the subscriber's bounded queue, which skips the viewer to a
  keyframe or ends it (`"slow"`, `Subscriber.on_drop` aborts the socket);
- byte accounting: `bytes_out` here and `Subscriber.add_bytes_out` (media bytes;
  transfer framing is not counted);
- the end: `run()` returns True once the subscriber ended (its end_reason says why)
  and everything queued was written, False once the client is gone (transport
  closing, write failed). A fault in the writer is logged here with its context,
  never raised into the fan-out.

HLS, a later third output, will not use this class: it has no socket per viewer.
It will consume the hub differently: one pull-mode Subscriber per stream
(`await Subscriber.read()` in a segmenter task) cutting segments that many HTTP
requests then read. Only the per-viewer socket outputs push.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..hub import Subscriber
from ..media.frame import Frame

log = logging.getLogger("liverelay.servers")

Serialise = Callable[[Frame], bytes]
# (pieces, media size) -> the pieces with transfer framing around them (HTTP chunked).
Wrap = Callable[[list[bytes], int], list[bytes]]


# Per cache key, the last batch written: (frames, wrap, pieces, size), see PushWriter._send.
# One entry per output format; it holds a few frames until the next batch replaces it.
_last_batch: dict[object, tuple[list[Frame], Wrap | None, list[bytes], int]] = {}


class PushWriter:
    """Writes `sub`'s frames to `transport` from the hub's fan-out until the end.

    `drain` waits until the transport accepts more (asyncio StreamWriter.drain or
    aiohttp's writer.drain); `prefix` is written before the first batch (the FLV
    header), in the same write and counted as written bytes.
    """

    # One per viewer: slots, and a bare future instead of an asyncio.Event (whose
    # waiter deque alone is ~600 bytes), keep a thousand viewers cheap.
    __slots__ = (
        "_waiter",
        "backlog_bytes",
        "bytes_out",
        "cache_key",
        "drain",
        "error",
        "gone",
        "paused",
        "prefix",
        "remote",
        "serialise",
        "sub",
        "transport",
        "wrap",
    )

    def __init__(
        self,
        sub: Subscriber,
        transport: asyncio.WriteTransport,
        cache_key: object,
        serialise: Serialise,
        drain: Callable[[], Awaitable[None]],
        *,
        backlog_bytes: int,
        remote: str,
        wrap: Wrap | None = None,
        prefix: list[bytes] | None = None,
    ) -> None:
        self.sub = sub
        self.transport = transport
        self.cache_key = cache_key
        self.serialise = serialise
        self.drain = drain
        self.backlog_bytes = backlog_bytes
        self.remote = remote
        self.wrap = wrap
        self.prefix = prefix or []
        self.bytes_out = 0  # media bytes written (what the subscriber was told)
        self.paused = False  # the transport is backed up: the task drains it
        self.gone = False  # the client left or a write failed
        self.error: Exception | None = None  # a fault that is not the peer's going
        # Set while run() waits for something to look at: paused, gone or ended.
        self._waiter: asyncio.Future[None] | None = None

    def _attention(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _write(self, pieces: list[bytes]) -> None:
        if self.prefix:
            pieces[:0] = self.prefix
            self.prefix = []
        size = sum(map(len, pieces))
        if self.wrap is not None:
            pieces = self.wrap(pieces, size)
        self.transport.writelines(pieces)
        self.bytes_out += size
        self.sub.add_bytes_out(size)

    def _send(self, frames: list[Frame]) -> None:
        """Write one batch. Viewers in step take the same batch at the same fan-out: the
        last one's pieces (framing included) are reused, found by comparing the batch
        (a C-level identity check per frame), so a viewer costs one writelines."""
        key = self.cache_key
        wrap = self.wrap
        last = _last_batch.get(key)
        if last is not None and last[1] is wrap and last[0] == frames and not self.prefix:
            pieces, size = last[2], last[3]
        else:
            serialise = self.serialise
            pieces = [f.cache.get(key) or serialise(f) for f in frames]
            prefixed = bool(self.prefix)
            if prefixed:
                pieces[:0] = self.prefix
                self.prefix = []
            size = sum(map(len, pieces))
            if wrap is not None:
                pieces = wrap(pieces, size)
            if not prefixed:  # the prefix is this viewer's alone
                _last_batch[key] = (frames, wrap, pieces, size)
        self.transport.writelines(pieces)
        self.bytes_out += size
        self.sub.bytes_out += size  # Subscriber.add_bytes_out, inlined: once per batch

    def deliver(self, frames: list[Frame]) -> bool:
        """The batch writer given to the hub (hot path: one call per viewer in step per
        flush). False when the transport is backed up: the subscriber then queues the
        batch itself and leaves the step. Never raises."""
        if self.paused:
            return False
        if self.gone:
            return True  # the task ends and closes the subscriber
        transport = self.transport
        try:
            if transport.is_closing():
                self._stop_gone()
                return True
            if transport.get_write_buffer_size() > self.backlog_bytes:
                self.paused = True
                self._attention()
                return False
            last = _last_batch.get(self.cache_key)
            if last is not None and last[0] is frames and last[1] is self.wrap and not self.prefix:
                transport.writelines(last[2])
                size = last[3]
                self.bytes_out += size
                self.sub.bytes_out += size
            else:
                self._send(frames)
        except (ConnectionError, OSError):
            self._stop_gone()
        except Exception as exc:  # the writer runs inside the hub's fan-out: never raise
            log.exception("write to viewer %s of %s failed", self.remote, self.sub.key)
            self.error = exc
            self._stop_gone()
        return True

    def wake(self) -> None:
        """The waker given to the hub: take and write what is queued. Never raises."""
        if self.paused or self.gone:
            return
        sub = self.sub
        transport = self.transport
        try:
            if transport.is_closing():
                self._stop_gone()
                return
            if not sub.ended and transport.get_write_buffer_size() > self.backlog_bytes:
                self.paused = True  # frames stay queued (bounded) until the drain
                self._attention()
                return
            frames = sub.take()
            if frames:
                self._send(frames)
            if sub.ended and not sub.queued_frames:
                self._attention()
        except (ConnectionError, OSError):
            self._stop_gone()
        except Exception as exc:  # the waker runs inside the hub's fan-out: never raise
            log.exception("write to viewer %s of %s failed", self.remote, sub.key)
            self.error = exc
            self._stop_gone()

    def _stop_gone(self) -> None:
        self.gone = True
        self._attention()

    async def run(self) -> bool:
        """Push until the end: True at the end of the subscription, False if the client
        went away. The subscriber is left in push mode only while this runs."""
        sub = self.sub
        loop = asyncio.get_running_loop()
        sub.set_waker(self.wake, self.deliver)
        try:
            self.wake()  # the join burst (metadata, headers, GOP) is already queued
            while True:
                if self.gone:
                    return False
                if self.paused:
                    try:
                        await self.drain()  # returns once the client has read enough
                    except (ConnectionError, OSError):
                        return False
                    self.paused = False
                    self.wake()
                    continue
                if sub.ended and not sub.queued_frames:
                    if self.prefix and not self.transport.is_closing():
                        self._write([])  # an end before any frame: the prefix alone
                    return True
                self._waiter = loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
        finally:
            sub.set_waker(None)
