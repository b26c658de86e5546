"""Many viewers from one asyncio (uvloop) process: HTTP-FLV and RTMP.

Most viewers are cheap byte counters (SO_RCVLOWAT 32 KiB, big reads, count bytes),
the method the nginx-rtmp anchors were measured with. A sample of viewers (1 in
`parse_every`) parses every message with the project's own parsers (FlvDecoder,
the RTMP client session) to check that media time keeps up with wall time.

RTMP counters still do handshake/connect/createStream/play through the client
session, then switch to counting and keep acknowledging (see bench.rtmpviewer).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from liverelay.media.frame import Frame, FrameKind

from .httpwire import ChunkedDecoder, HttpWireError, ResponseHead, build_get

RCVLOWAT = 32 * 1024
CONNECT_TIMEOUT_S = 5.0


@dataclass
class ViewerStats:
    """What one viewer saw. Times are time.monotonic()."""

    index: int
    protocol: str  # "flv" | "rtmp"
    parsed: bool
    started_at: float = 0.0  # connect attempt began (TTFF starts here)
    connected_at: float | None = None
    first_byte_at: float | None = None
    first_audio_at: float | None = None
    first_video_key_at: float | None = None  # first coded keyframe (not a sequence header)
    last_key_at: float | None = None  # latest video keyframe (the GOP phase reference)
    keyframes: int = 0
    bytes: int = 0
    frames: int = 0
    last_ts: int | None = None  # highest media timestamp seen (ms)
    last_frame_at: float | None = None
    max_gap_s: float = 0.0  # longest wall gap between two media frames
    gap_ends: list[tuple[float, float]] = field(default_factory=list)  # (gap start, gap end) > gap_log_s
    closes: list[float] = field(default_factory=list)  # when each connection ended
    # Longest gap between two frames where the later one arrived after `watch_from`
    # (failover: set to the kill time, this is the outage as the viewer saw it).
    watch_from: float | None = None
    max_gap_watched: float = 0.0
    closed_at: float | None = None
    error: str | None = None
    reconnects: int = 0
    # Window marks (set by ViewerPool.mark()).
    mark_at: float | None = None
    mark_bytes: int = 0
    mark_ts: int | None = None

    @property
    def ttff_s(self) -> float | None:
        return None if self.first_video_key_at is None else self.first_video_key_at - self.started_at

    @property
    def first_audio_s(self) -> float | None:
        return None if self.first_audio_at is None else self.first_audio_at - self.started_at

    def on_frame(self, frame: Frame, now: float, gap_log_s: float) -> None:
        self.frames += 1
        if frame.kind == FrameKind.DATA:
            return
        if frame.kind == FrameKind.AUDIO and self.first_audio_at is None and not frame.config:
            self.first_audio_at = now
        if frame.kind == FrameKind.VIDEO and frame.keyframe:
            self.keyframes += 1
            self.last_key_at = now
            if self.first_video_key_at is None:
                self.first_video_key_at = now
        if self.last_frame_at is not None:
            gap = now - self.last_frame_at
            if gap > self.max_gap_s:
                self.max_gap_s = gap
            if self.watch_from is not None and now >= self.watch_from and gap > self.max_gap_watched:
                self.max_gap_watched = gap
            if gap > gap_log_s and len(self.gap_ends) < 100:
                self.gap_ends.append((self.last_frame_at, now))
        self.last_frame_at = now
        if self.last_ts is None or frame.timestamp > self.last_ts:
            self.last_ts = frame.timestamp

    def mark(self, now: float) -> None:
        self.mark_at = now
        self.mark_bytes = self.bytes
        self.mark_ts = self.last_ts

    def byte_rate_since_mark(self, now: float) -> float:
        if self.mark_at is None:
            return 0.0
        return (self.bytes - self.mark_bytes) / max(now - self.mark_at, 1e-9)

    def media_wall_ratio_since_mark(self, now: float) -> float | None:
        """Media time advanced / wall time elapsed since the mark (1.0 = keeping up)."""
        if self.mark_at is None or self.mark_ts is None or self.last_ts is None:
            return None
        return (self.last_ts - self.mark_ts) / 1000.0 / max(now - self.mark_at, 1e-9)


class _Proto(asyncio.Protocol):
    """Hands socket events to a Viewer; the cheapest path asyncio offers."""

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.viewer.on_connected(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.viewer.on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.viewer.on_closed(exc)


class Viewer:
    """One viewer connection. Subclasses speak the protocol; this base owns the socket."""

    protocol = "?"

    def __init__(self, index: int, url: str, *, parsed: bool, gap_log_s: float = 0.5) -> None:
        self.url = url
        self.stats = ViewerStats(index, self.protocol, parsed)
        self.parsed = parsed
        self.gap_log_s = gap_log_s
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.Event()
        self._closing = False  # we ended it (close()/fail()), not the server
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or self.default_port

    default_port = 0

    async def connect(self, timeout: float = CONNECT_TIMEOUT_S) -> None:
        """Open the TCP connection (the protocol exchange then runs from callbacks)."""
        loop = asyncio.get_running_loop()
        self.closed.clear()
        self._closing = False
        self.stats.started_at = time.monotonic()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await asyncio.wait_for(loop.sock_connect(sock, (self.host, self.port)), timeout)
            await loop.create_connection(lambda: _Proto(self), sock=sock)
        except BaseException as exc:
            sock.close()
            self.stats.error = f"connect: {exc!r}"
            self.stats.closed_at = time.monotonic()
            self.closed.set()
            if isinstance(exc, asyncio.CancelledError):
                raise
            return

    def on_connected(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.stats.connected_at = time.monotonic()

    def on_data(self, data: bytes) -> None:
        raise NotImplementedError

    def start_counting(self) -> None:
        """From now on wake only per 32 KiB: counting then costs one read per 32 KiB.

        Set only once the protocol setup is over: a handshake reply is smaller than that.
        """
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, RCVLOWAT)

    def on_closed(self, exc: Exception | None) -> None:
        self.stats.closed_at = time.monotonic()
        if len(self.stats.closes) < 1000:
            self.stats.closes.append(self.stats.closed_at)
        if self.stats.error is None and not self._closing:
            self.stats.error = "closed by server" if exc is None else repr(exc)
        self.transport = None
        self.closed.set()

    def fail(self, reason: str) -> None:
        """A protocol error: record it and drop this connection."""
        if self.stats.error is None:
            self.stats.error = reason
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def emit(self, frames: list[Frame]) -> None:
        now = time.monotonic()
        for frame in frames:
            self.stats.on_frame(frame, now, self.gap_log_s)


class FlvViewer(Viewer):
    """HTTP-FLV viewer: GET, then count body bytes or decode every FLV tag."""

    protocol = "flv"
    default_port = 80

    def __init__(self, index: int, url: str, *, parsed: bool, gap_log_s: float = 0.5) -> None:
        super().__init__(index, url, parsed=parsed, gap_log_s=gap_log_s)
        parts = urlsplit(url)
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self._head = ResponseHead()
        self._chunked: ChunkedDecoder | None = None
        self._flv: object | None = None

    def on_connected(self, transport: asyncio.Transport) -> None:
        super().on_connected(transport)
        self._head = ResponseHead()
        self._chunked = None
        self._flv = None
        transport.write(build_get(f"{self.host}:{self.port}", self.path))

    def on_data(self, data: bytes) -> None:
        st = self.stats
        if st.first_byte_at is None:
            st.first_byte_at = time.monotonic()
        st.bytes += len(data)
        if not self.parsed and self._head.done:
            return  # the cheap path: count and go
        try:
            body = data
            if not self._head.done:
                body = self._head.feed(data)
                if not self._head.done:
                    return
                if self._head.status != 200:
                    self.fail(f"http status {self._head.status}")
                    return
                if self._head.chunked:
                    self._chunked = ChunkedDecoder()
                if not self.parsed:
                    self.start_counting()
                    return
                from liverelay.media.flv import FlvDecoder

                self._flv = FlvDecoder()
            if self._chunked is not None:
                body = self._chunked.feed(body)
            if body:
                self.emit(flv_frames(self._flv, body))
        except HttpWireError as exc:
            self.fail(f"http: {exc}")
        except Exception as exc:  # FlvError and anything the decoder raises on bad input
            self.fail(f"flv: {exc!r}")


def flv_frames(decoder: object, data: bytes) -> list[Frame]:
    """Feed the project's FlvDecoder and keep only the Frames (not the FLV header event)."""
    events = decoder.feed(data)  # type: ignore[attr-defined]
    return [e for e in events if isinstance(e, Frame)]


ViewerFactory = Callable[[int, str, bool], Viewer]


def make_viewer(index: int, url: str, parsed: bool) -> Viewer:
    if url.startswith("rtmp://"):
        from .rtmpviewer import RtmpViewer

        return RtmpViewer(index, url, parsed=parsed)
    if url.startswith("http://"):
        return FlvViewer(index, url, parsed=parsed)
    raise ValueError(f"no viewer for {url}")


class ViewerPool:
    """N viewers of one URL; 1 in `parse_every` parses every message.

    With `reconnect`, a viewer whose connection ends reconnects (bounded attempts),
    and each reconnect is counted: the failover benchmark's "viewer reconnects".
    """

    def __init__(
        self,
        url: str,
        n: int,
        *,
        parse_every: int = 10,
        reconnect: bool = False,
        reconnect_delay_s: float = 0.2,
        max_reconnects: int = 20,
        connect_concurrency: int = 50,
        factory: ViewerFactory = make_viewer,
    ) -> None:
        self.url = url
        self.viewers = [factory(i, url, parse_every > 0 and i % parse_every == 0) for i in range(n)]
        self.reconnect = reconnect
        self.reconnect_delay_s = reconnect_delay_s
        self.max_reconnects = max_reconnects
        self._sem = asyncio.Semaphore(connect_concurrency)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self, progress: Callable[[int], None] | None = None) -> None:
        """Connect every viewer (bounded concurrency); returns once all attempts are made."""
        done = 0

        async def one(v: Viewer) -> None:
            nonlocal done
            async with self._sem:
                await v.connect()
            done += 1
            if progress and done % 100 == 0:
                progress(done)

        await asyncio.gather(*(one(v) for v in self.viewers))
        if self.reconnect:
            self._tasks = [asyncio.create_task(self._keep(v)) for v in self.viewers]

    async def _keep(self, v: Viewer) -> None:
        for _ in range(self.max_reconnects):
            await v.closed.wait()
            if self._stopping:
                return
            await asyncio.sleep(self.reconnect_delay_s)
            if self._stopping:
                return
            v.stats.reconnects += 1
            await v.connect()

    def mark(self) -> None:
        now = time.monotonic()
        for v in self.viewers:
            v.stats.mark(now)

    def connected(self) -> int:
        return sum(1 for v in self.viewers if v.transport is not None)

    async def close(self) -> None:
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for v in self.viewers:
            v.close()
        await asyncio.sleep(0)  # let connection_lost callbacks run

    def summary(self, full_rate_bps: float, *, full_rate_fraction: float = 0.9) -> dict[str, object]:
        """Window results (call after mark() and the window's sleep)."""
        now = time.monotonic()
        rates = [v.stats.byte_rate_since_mark(now) for v in self.viewers]
        maybe = [v.stats.media_wall_ratio_since_mark(now) for v in self.viewers if v.parsed]
        ratios = [r for r in maybe if r is not None]
        parsed_n = sum(1 for v in self.viewers if v.parsed)
        errors = [v.stats.error for v in self.viewers if v.stats.error]
        return {
            "viewers": len(self.viewers),
            "connected": self.connected(),
            "full_rate": sum(1 for r in rates if r >= full_rate_fraction * full_rate_bps),
            "rate_median_bps": statistics.median(rates) if rates else 0.0,
            "rate_min_bps": min(rates) if rates else 0.0,
            "parsed": parsed_n,
            "parsed_with_media": len(ratios),
            "media_wall_min": min(ratios) if ratios else None,
            "media_wall_median": statistics.median(ratios) if ratios else None,
            "errors": len(errors),
            "error_examples": sorted(set(errors))[:3],
        }
