"""RTMP pull source: play a stream from an origin (another liverelay, nginx-rtmp, SRS, a CDN).

Time to first frame matters here (a viewer is waiting), so the client keeps round
trips to the minimum the protocol allows: C2 and connect leave in one write,
createStream right after connect's _result, play right after createStream's, and
TCP_NODELAY is set so none of those small writes waits for a delayed ACK.

Once media flows steadily, the pull's reads are coalesced (netio.ReadCoalescer, SO_RCVLOWAT
at about `relay.pull_read_coalesce_ms` of the measured rate): the loop wakes some 25 times
a second instead of once per RTMP message, for at most PULL_TICK_WINDOWS windows of added
delay of what stays below the mark (the hub holds viewers' writes for viewer_flush_ms of
media anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

from ..config import RelaySettings
from ..media.frame import Frame
from ..media.rtmp import (
    CommandFailed,
    ConnectFailed,
    MediaReceived,
    RtmpClientSession,
    RtmpError,
    StatusEvent,
    StreamEof,
)
from ..media.rtmp import messages as m
from ..netaddr import ORIGIN_SCHEMES, format_hostport
from ..netio import ReadCoalescer
from .base import RELAY_VIA_PARAM, FrameSink, SourceError, current_relay_via
from .policy import pinned_addresses

log = logging.getLogger("liverelay.sources.rtmp")

# Pull read coalescing (relay.pull_read_coalesce_ms is the window): what stays below the
# mark is read once nothing was read for this many windows; the mark is at most
# PULL_COALESCE_MAX_BYTES, and a stream slower than PULL_COALESCE_MIN_BYTES per window is
# read as it comes. The tick is short (80 ms at 40 ms) because the last frames before an
# origin pauses (an unpublish) wait for it; 2 windows still lets a steady stream fill the
# mark (a video frame or two) before it fires. An origin that sends in bursts (nginx-rtmp)
# stretches it to 1.5 x its mean burst gap, at most PULL_MAX_TICK_WINDOWS (netio.ReadCoalescer).
PULL_TICK_WINDOWS = 2.0
PULL_MAX_TICK_WINDOWS = 3.0
PULL_COALESCE_MAX_BYTES = 64 * 1024
PULL_COALESCE_MIN_BYTES = 2048


@dataclass(frozen=True)
class RtmpUrl:
    host: str
    port: int
    app: str
    stream: str  # with "?query" when the URL has one
    tc_url: str
    tls: bool


def parse_rtmp_url(url: str) -> RtmpUrl:
    """rtmp://host[:port]/app[/inst]/stream[?query]: the app is everything but the last segment
    (also rtmp://host/app?vhost=DOMAIN/stream[?query]: the app is `app?vhost=DOMAIN`)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SourceError("unsupported", f"bad RTMP URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("rtmp", "rtmps") or not parts.hostname:
        raise SourceError("unsupported", f"not an RTMP URL: {url!r}")
    tls = scheme == "rtmps"
    if port is None:
        port = ORIGIN_SCHEMES[scheme] or 1935
    segments = [s for s in parts.path.split("/") if s]
    query = parts.query
    if len(segments) == 1 and "/" in query:
        # SRS's form rtmp://host/app?vhost=DOMAIN/stream: the app's query (a vhost for the
        # server's connect) sits between the app and the stream (cluster peer pulls use it).
        app_query, _, rest = query.partition("/")
        stream_name, _, query = rest.partition("?")
        segments = [f"{segments[0]}?{app_query}", stream_name]
    if len(segments) < 2 or not segments[-1]:
        raise SourceError("unsupported", f"RTMP URL {url!r} needs /app/stream")
    app = "/".join(segments[:-1])
    stream = segments[-1] + (f"?{query}" if query else "")
    host = parts.hostname
    tc_url = f"{scheme}://{format_hostport(host, port)}/{app}"
    return RtmpUrl(host, port, app, stream, tc_url, tls)


def marked_play_name(stream: str) -> str:
    """The play name with the relay-loop marker in its query when this pull is a relay's."""
    via = current_relay_via()
    if not via:
        return stream
    return f"{stream}{'&' if '?' in stream else '?'}{RELAY_VIA_PARAM}={via}"


async def pull(url: str, sink: FrameSink, *, settings: RelaySettings) -> None:
    """Play `url` and hand every frame to `sink`; return when the origin ends the stream."""
    target = parse_rtmp_url(url)
    session = RtmpClientSession(app=target.app, tc_url=target.tc_url, play=marked_play_name(target.stream))
    loop = asyncio.get_running_loop()
    reader = _PullReader(session, sink, url, loop, settings.pull_read_coalesce_ms / 1000)
    transport: asyncio.Transport | None = None
    try:
        try:
            async with asyncio.timeout(settings.connect_timeout_s):
                addresses = await pinned_addresses(target.host, settings)
                transport = await _open_pinned(target, addresses, reader)
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                session.initiate()
                transport.write(session.data_to_send())
                # Handshake + connect must finish within the connect timeout too.
                await reader.connected
        except TimeoutError:
            raise SourceError(
                "timeout",
                f"no RTMP connect to {target.host}:{target.port} within {settings.connect_timeout_s}s",
            ) from None
        except OSError as exc:
            raise SourceError("connect", f"cannot connect to {target.host}:{target.port}: {exc}") from None
        reader.watch(settings.first_frame_timeout_s, settings.no_media_timeout_s)
        await reader.finished
    except RtmpError as exc:
        raise SourceError("protocol", f"{url}: {exc.reason}") from None
    finally:
        reader.stop()
        session.close()
        if transport is not None:
            transport.abort()


class _PullReader(asyncio.Protocol):
    """The pull connection's reader: each read is parsed and its frames handed to the sink
    inside data_received, with no task switch and no timer per read (a relay reads some
    60 times a second per stream). The outcome is `finished`: None at a clean end of the
    stream, or the exception that ends the pull. `connected` resolves once the session
    has connected (handshake, connect, createStream; play is then under way).

    The read deadline (first frame, then no media) is one timer per connection that is
    pushed back only when it fires early: data_received just notes the time."""

    def __init__(
        self,
        session: RtmpClientSession,
        sink: FrameSink,
        url: str,
        loop: asyncio.AbstractEventLoop,
        coalesce_s: float = 0.0,
    ) -> None:
        self.session = session
        self.sink = sink
        self.url = url
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.connected: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()
        self.media_started = False
        self.last_read = loop.time()
        self._limits = (0.0, 0.0)  # (before the first frame, after it); 0 = not watching yet
        self._timer: asyncio.TimerHandle | None = None
        self._coalesce_s = coalesce_s  # the read coalescing window (0 = off)
        self.coalescer: ReadCoalescer | None = None  # made once connected, with the socket

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, only alike)
        self.transport = cast(asyncio.Transport, transport)
        if self._coalesce_s > 0:
            self.coalescer = ReadCoalescer(
                self.loop,
                transport.get_extra_info("socket"),
                window_s=self._coalesce_s,
                tick_s=self._coalesce_s * PULL_TICK_WINDOWS,
                max_tick_s=self._coalesce_s * PULL_MAX_TICK_WINDOWS,
                max_bytes=PULL_COALESCE_MAX_BYTES,
                min_bytes=PULL_COALESCE_MIN_BYTES,
                label=f"rtmp pull {self.url}",
            )

    def data_received(self, data: bytes) -> None:
        if self.finished.done():
            return  # ended: the owner aborts the transport
        self.last_read = self.loop.time()
        if self.coalescer is not None:
            self.coalescer.on_read(len(data))
        try:
            self._handle(data)
        except Exception as exc:  # handed to the pull task, which raises it (as a read did)
            self._end(exc)

    def eof_received(self) -> bool | None:
        return None  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.finished.done():
            return
        if exc is None:  # the origin closed the connection
            if self.media_started:
                self._end(None)
            else:
                self._end(SourceError("eof", "origin closed the connection before any media"))
        elif not self.connected.done():
            self._end(exc)  # pull() reports it as a connect failure
        elif self.media_started:
            log.info("rtmp pull %s: connection lost after media: %s", self.url, exc)
            self._end(None)
        else:
            self._end(SourceError("eof", f"{self.url}: connection lost before any media: {exc}"))

    # -- the pull's life -------------------------------------------------------------

    def watch(self, first_frame_s: float, no_media_s: float) -> None:
        """Start the read deadline: `first_frame_s` until media flows, then `no_media_s`."""
        self._limits = (first_frame_s, no_media_s)
        self.last_read = self.loop.time()
        self._arm(self._limit())

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.coalescer is not None:
            self.coalescer.stop(closing=True)  # (the owner aborts the transport next)
        for fut in (self.connected, self.finished):
            if not fut.done():
                fut.cancel()
            elif not fut.cancelled():
                fut.exception()  # retrieved: an outcome that lost the race is not logged

    def _limit(self) -> float:
        return self._limits[1] if self.media_started else self._limits[0]

    def _arm(self, delay: float) -> None:
        self._timer = self.loop.call_at(self.last_read + delay, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        if self.finished.done():
            return
        limit = self._limit()
        if self.loop.time() - self.last_read < limit:
            self._arm(limit)  # read since it was armed: wait from the last read
            return
        what = "media" if self.media_started else "first frame"
        self._end(SourceError("timeout", f"no {what} from {self.url} within {limit}s"))

    def _end(self, outcome: BaseException | None) -> None:
        """Resolve the pull (first outcome wins) and whatever still waits to connect."""
        if not self.connected.done():
            if outcome is None:
                self.connected.set_result(None)
            else:
                self.connected.set_exception(outcome)
                self.finished.cancel()
                return
        if not self.finished.done():
            if outcome is None:
                self.finished.set_result(None)
            else:
                self.finished.set_exception(outcome)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.coalescer is not None:
            self.coalescer.stop()  # what the origin still sends is read as it comes

    def _handle(self, data: bytes) -> None:
        """One read: feed the session, send its replies, deliver frames, act on statuses."""
        session = self.session
        events = session.receive_data(data)
        out = session.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)
        sink = self.sink
        had_media = self.media_started
        got_media = False
        ended = False
        # Consecutive frames go to the sink as one run (one call per read, not per frame);
        # a status between them hands over the run before it first, so order is kept.
        run: list[Frame] = []
        for event in events:
            if type(event) is MediaReceived:
                run.append(event.frame)
                continue
            if run:
                sink.on_frames(run)
                run = []
                got_media = True
            if isinstance(event, StatusEvent):
                if self.coalescer is not None:
                    # The stream changes (unpublished, back, stopped): every message as it
                    # comes until its new rate is known (a republish reaches viewers at once).
                    self.coalescer.start()
                if event.code == m.PLAY_STREAM_NOT_FOUND:
                    raise SourceError("protocol", f"stream not found at origin ({event.description})")
                if event.code == m.PLAY_UNPUBLISH_NOTIFY:
                    # nginx-rtmp (`publish_notify on`) and SRS keep the player and send
                    # PublishNotify and fresh media when the publisher returns.
                    ended = ended or not _wait_for_republish(sink, had_media or got_media)
                elif event.code == m.PLAY_STOP:
                    ended = True
                elif event.code == m.PLAY_PUBLISH_NOTIFY:
                    log.debug("rtmp pull: the origin's publisher is back")
                elif event.level == "error":
                    raise SourceError("protocol", f"origin refused: {event.code} {event.description}")
            elif isinstance(event, StreamEof) and event.stream_id == session.stream_id:
                if self.coalescer is not None:
                    self.coalescer.start()  # as for a status above
                # nginx-rtmp sends StreamEOF when its publisher leaves, keeps the player and
                # resumes with StreamBegin and fresh media when the publisher returns.
                ended = ended or not _wait_for_republish(sink, had_media or got_media)
            elif isinstance(event, ConnectFailed):
                desc = event.info.get("description") or event.info.get("code") or "connect rejected"
                raise SourceError("protocol", f"origin rejected connect: {desc}")
            elif isinstance(event, CommandFailed):
                raise SourceError("protocol", f"origin refused {event.command}: {event.info!r}")
        if run:
            sink.on_frames(run)
            got_media = True
        if got_media and not had_media:
            self.media_started = True
            if self.coalescer is not None:
                self.coalescer.start()  # coalesced once its rate is known (after a period)
        if ended:
            if not (had_media or got_media):
                raise SourceError("eof", "origin ended the stream before any media")
            self._end(None)
        elif session.connected and not self.connected.done():
            self.connected.set_result(None)


async def _open_pinned(target: RtmpUrl, addresses: tuple[str, ...], reader: _PullReader) -> asyncio.Transport:
    """Connect to the first of the policy-checked addresses that answers (never to a fresh
    lookup of the name); TLS still verifies and sends SNI for the URL's host name."""
    loop = asyncio.get_running_loop()
    last: OSError | None = None
    for address in addresses:
        try:
            transport, _ = await loop.create_connection(
                lambda: reader,
                address,
                target.port,
                ssl=ssl.create_default_context() if target.tls else None,
                server_hostname=target.host if target.tls else None,
            )
            return transport
        except OSError as exc:
            last = exc
    raise last or OSError(f"no address for {target.host}")


def _wait_for_republish(sink: FrameSink, had_media: bool) -> bool:
    """The origin's publisher left: True when the sink keeps this connection for its return
    (the decision is made in order, before any frame that follows in the same read)."""
    return had_media and sink.on_unpublished()
