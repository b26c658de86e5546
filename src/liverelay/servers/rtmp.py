"""The RTMP listener: asyncio glue between sockets, media.rtmp sessions and the hub.

Each connection is an asyncio.Protocol whose data_received feeds the sans-IO session
(no reader task; timers bound the handshake, setup and idle time). A player is fed in the
hub's push mode through the shared push-writer (servers/sink.py): the hub's fan-out
calls the viewer's waker, which take()s the batch and hands the chunk bytes cached on
each frame (serialised once for every viewer) to the socket in one writelines call -
no task switch and no copy per viewer and batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections.abc import Callable
from typing import cast
from urllib.parse import parse_qs, unquote, urlsplit

from ..hub import Publication, SourceKind, StreamBusy, StreamKey, Subscriber
from ..media.rtmp import (
    ConnectRequest,
    MediaReceived,
    MemoryBudget,
    PlayRequest,
    PublishRequest,
    RtmpError,
    RtmpLimits,
    RtmpServerSession,
    StreamDeleted,
    frame_chunks,
)
from ..media.rtmp.messages import PLAY_FAILED
from ..netio import ReadCoalescer
from .admission import AddressCap, ListenerLimits, RateLimitedLog
from .peertext import clip
from .protocols import ListenerDeps
from .sink import PushWriter
from .vhost import resolve_vhost

log = logging.getLogger("liverelay.rtmp")

# The most one read hands data_received (uvloop's and asyncio's read buffer).
READ_SIZE = 256 * 1024
# Bytes of one read parsed per loop turn. A read can be READ_SIZE; at chunk size 1 that is
# 128 Ki chunk headers, a fifth of a second of parsing in one callback, and everything else
# on the node waits that long per turn (an API request needs several turns). A larger read
# is parsed a slice per turn with reading paused, so one connection's framing, hostile or
# not, costs the others at most a slice's parsing per turn. Coalesced reads (at most
# COALESCE_MAX_BYTES plus what arrived meanwhile) are rarely split.
FEED_SLICE_BYTES = 64 * 1024
# ... and fewer when the peer's chunks are tiny: parsing costs per chunk, not per byte (a
# 64 KiB slice of 1-byte chunks is 32 Ki chunks, 40-80 ms on this machine). A slice holds
# at most this many of the peer's chunks, and never less than FEED_SLICE_MIN_BYTES.
FEED_SLICE_CHUNKS = 1024
FEED_SLICE_MIN_BYTES = 4 * 1024
# Past this many unsent bytes a viewer's writer waits for the socket (backpressure).
WRITE_BACKLOG_BYTES = 256 * 1024
# Read coalescing for a publisher nobody watches (no viewer, no relay pulling, no HLS):
# its socket's SO_RCVLOWAT is raised to about this much of its media (netio.ReadCoalescer),
# so the loop wakes ~4 times a second instead of for every message (~60/s at 2 Mbit/s; each
# wake-up of a Python loop costs far more than the parsing). The first viewer lowers it
# back to one byte at once (the queued bytes follow the GOP it is sent), and a tick reads
# what a quiet publisher left below the mark (a command, the end of a stream) within
# COALESCE_TICK_S of its last read.
COALESCE_S = 0.25
COALESCE_MAX_BYTES = 64 * 1024
COALESCE_MIN_BYTES = 4096  # a stream slower than this per COALESCE_S is read as it comes
COALESCE_TICK_S = 0.5


def feed_slice_bytes(chunk_size: int) -> int:
    """Bytes of a read parsed in one loop turn when the peer sends chunks of `chunk_size`."""
    return min(FEED_SLICE_BYTES, max(FEED_SLICE_MIN_BYTES, chunk_size * FEED_SLICE_CHUNKS))


class _ConnectionEnd(Exception):
    """Ends one connection with a reason for the log line (not an error of the node)."""


def split_name(name: str) -> tuple[str, str]:
    """'stream?a=1' -> ('stream', 'a=1'); 'a%20b' -> ('a b', ''): percent-escapes decoded once.

    A publish/play name is a URL path segment (as in an HTTP-FLV URL, which aiohttp decodes),
    so one stream has one name over both protocols and our pullers' quoted names round-trip
    (docs/relay.md, "Stream names"). The query stays undecoded: it may carry signatures.
    """
    base, _, query = name.partition("?")
    try:
        return unquote(base, errors="strict"), query
    except UnicodeDecodeError:  # escapes that are not UTF-8: the name is kept as sent
        return base, query


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Connection(asyncio.Protocol):
    """One accepted connection, driven by the loop's callbacks: `data_received` feeds the
    sans-IO session directly (no StreamReader, no task switch and no future per read: an
    idle publisher's ~60 reads a second cost only the parsing), timers bound the handshake,
    the setup and the idle time, and a task exists only while a player plays."""

    def __init__(self, server: RtmpServer) -> None:
        self.server = server
        self.deps = server.deps
        self.loop = asyncio.get_running_loop()
        self.session = RtmpServerSession(
            chunk_size=self.deps.settings.media.rtmp_chunk_size,
            limits=server.session_limits,
            budget=server.budget,
            connect_handler=self._on_connect,
        )
        self.transport: asyncio.Transport | None = None
        self.address: str | None = None  # the AddressCap key, released at the end
        self.remote = "-"
        self.vhost = ""
        self.app = ""
        self.role = "-"
        self.key: StreamKey | None = None
        self.publications: dict[int, Publication] = {}
        self.play_task: asyncio.Task[None] | None = None
        self.play_stream_id = 0
        self.chunk_key: tuple[str, int, int] = ("rtmp", 0, 0)
        self.subscriber: Subscriber | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.started = time.monotonic()
        now = self.loop.time()
        self.progress_at = now  # loop time of the last whole message (the idle clock)
        self.setup_deadline = now + self.deps.settings.media.rtmp_setup_timeout_s
        self.end_reason: str | None = None  # the first reason given wins
        self._timer: asyncio.TimerHandle | None = None
        self._handshaken = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._lost = False
        self._coalescer: ReadCoalescer | None = None  # the publisher socket's read coalescing
        self._stop_watching: Callable[[], None] | None = None
        self._backlog: bytearray | None = None  # a large read being parsed slice by slice
        self._cleaned = False
        self._finished = False

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass: no isinstance).
        self.transport = transport = cast(asyncio.Transport, transport)
        server = self.server
        peer = transport.get_extra_info("peername")
        self.address = server.cap.acquire(peer)
        if self.address is None:
            self._cleaned = self._finished = True  # never admitted: nothing to clean or log
            transport.abort()
            return
        server.connections.add(self)
        self.remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)
        set_nodelay(transport)
        self._coalescer = ReadCoalescer(
            self.loop,
            transport.get_extra_info("socket"),
            window_s=COALESCE_S,
            tick_s=COALESCE_TICK_S,
            max_bytes=COALESCE_MAX_BYTES,
            min_bytes=COALESCE_MIN_BYTES,
            label=f"rtmp {self.remote}",
        )
        self._arm(self.loop.time() + self.deps.settings.media.handshake_timeout_s)

    def data_received(self, data: bytes) -> None:
        if self._cleaned:
            return
        self.bytes_in += len(data)
        if self._coalescer is not None:
            self._coalescer.on_read(len(data))
        if self._backlog is not None:  # a read that was under way when reading paused
            self._backlog += data
            return
        if len(data) > self._slice_bytes():
            self._backlog = bytearray(data)
            if self.transport is not None and not self.transport.is_closing():
                self.transport.pause_reading()
            self._feed_backlog()
            return
        self._feed_guarded(data)

    def _feed_backlog(self) -> None:
        """Parse one slice of the backlog; the rest on the next loop turn, reading paused."""
        backlog = self._backlog
        if backlog is None or self._cleaned:
            self._backlog = None
            return
        size = self._slice_bytes()
        piece = bytes(backlog[:size])
        del backlog[:size]
        self._feed_guarded(piece)
        if self._cleaned:
            self._backlog = None
        elif backlog:
            self.loop.call_soon(self._feed_backlog)
        else:
            self._backlog = None
            transport = self.transport
            if not self._write_paused and transport is not None and not transport.is_closing():
                transport.resume_reading()

    def _slice_bytes(self) -> int:
        return feed_slice_bytes(self.session.reader.chunk_size)

    def _feed_guarded(self, data: bytes) -> None:
        try:
            self._feed(data)
        except _ConnectionEnd as exc:
            self._end(str(exc))
        except RtmpError as exc:
            if exc.internal:  # our bug, not the peer's: keep the traceback
                log.error("rtmp %s: internal error", self.remote, exc_info=exc)
            self._end(f"protocol error: {clip(exc.reason)}")
        except Exception as exc:  # never let one connection's bug reach the listener
            log.exception("rtmp %s: connection handler failed", self.remote)
            self._end(f"internal error: {exc!r}")

    def eof_received(self) -> bool:
        # What the peer sent before closing is parsed now (at most one read's worth).
        while self._backlog and not self._cleaned:
            self._feed_backlog()
        self.set_reason("closed by peer")
        return False  # the transport closes itself; connection_lost cleans up

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if exc is not None:
            self.set_reason(f"socket error: {exc}")
        self.set_reason("closed by peer")
        self._wake_drainers()
        self._cleanup()

    def pause_writing(self) -> None:
        # The peer does not read what we send: stop reading it too (as awaiting
        # StreamWriter.drain() after each read did), and a player's writer waits.
        self._write_paused = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._backlog is None and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()  # (with a backlog, its last slice resumes reading)
        self._wake_drainers()

    # ------------------------------------------------------------ I/O

    def _feed(self, data: bytes) -> None:
        session = self.session
        events = session.receive_data(data)
        if events:
            self.progress_at = self.loop.time()
            publications = self.publications
            for event in events:
                if type(event) is MediaReceived:
                    pub = publications.get(event.stream_id)
                    if pub is not None:
                        pub.write(event.frame)
                else:
                    self._on_event(event)
        # Auto-replies and the answers queued above, in order: the session's one way out.
        out = session.data_to_send()
        if out:
            self.write(out)
        if not self._handshaken and session.handshake_done:
            self._handshaken = True
            self._arm(self._deadline())
        if session.closed:
            raise _ConnectionEnd("session closed")

    # ------------------------------------------------------------ read coalescing

    def _watch(self, key: StreamKey) -> None:
        stream = self.deps.hub.get(key)
        if stream is None or self._coalescer is None:
            return
        self._coalescer.start()  # its rate is measured from the start of publishing
        self._stop_watching = stream.add_viewer_listener(self._on_viewers)
        self._on_viewers(stream.viewer_count)

    def _on_viewers(self, count: int) -> None:
        if self._coalescer is not None:
            # Watched: every message as it comes (what waited is readable now).
            self._coalescer.hold(count == 0)

    def _unwatch(self, *, closing: bool = False) -> None:
        if self._stop_watching is not None:
            self._stop_watching()
            self._stop_watching = None
        if self._coalescer is not None:
            self._coalescer.stop(closing=closing)

    def write(self, data: bytes) -> None:
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)
            self.bytes_out += len(data)

    async def _drain(self) -> None:
        """Wait until the transport accepts more (what StreamWriter.drain did)."""
        transport = self.transport
        if transport is not None and transport.is_closing():
            await asyncio.sleep(0)  # lets connection_lost run if the loss is under way
        if self._lost:
            raise ConnectionResetError("Connection lost")
        if not self._write_paused:
            return
        waiter = self.loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                if self._lost:
                    waiter.set_exception(ConnectionResetError("Connection lost"))
                else:
                    waiter.set_result(None)

    # ------------------------------------------------------------ timeouts

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        # Re-arming a timer on every read cost more than the read (a publisher's
        # message comes in two or three): the timer is set for the deadline known when
        # it was armed and, when it fires, moved on if the idle clock moved meanwhile,
        # by a slack, so it fires about once per idle timeout and at most this late.
        self._timer = None
        if self._cleaned or self.play_task is not None:
            return  # a player may stay silent for hours; its socket's life is the play task's
        if not self.session.handshake_done:
            self._end("handshake timeout")
            return
        deadline = self._deadline()
        if self.loop.time() >= deadline:
            self._end("setup timeout" if self.role == "-" else "idle timeout")
            return
        self._arm(deadline + min(1.0, self.deps.settings.media.idle_timeout_s / 8))

    def _deadline(self) -> float:
        # Bytes alone are no progress (a peer may trickle one byte at a time): the idle
        # clock restarts only when a whole message arrives, and the setup (to
        # publish/play) has an overall deadline.
        deadline = self.progress_at + self.deps.settings.media.idle_timeout_s
        if self.role == "-":
            deadline = min(deadline, self.setup_deadline)
        return deadline

    # ------------------------------------------------------------ requests

    def _on_event(self, event: object) -> None:
        if isinstance(event, PublishRequest):
            self._on_publish(event)
        elif isinstance(event, PlayRequest):
            self._on_play(event)
        elif isinstance(event, StreamDeleted):
            self._on_stream_deleted(event)

    def _on_connect(self, req: ConnectRequest) -> str | None:
        """The session's connect handler: None accepts, a string is the reason to refuse."""
        app, _, app_query = req.app.partition("?")
        self.app = app.strip("/")
        url = urlsplit(req.tc_url) if req.tc_url else None
        host = (url.hostname or "") if url else ""
        params = parse_qs(app_query or (url.query if url else ""))
        host = (params.get("vhost") or [host])[0].lower()
        vhost = resolve_vhost(self.deps, host)
        if not vhost:
            self.set_reason(f"connect rejected: unknown domain {clip(host)!r}")
            return f"Unknown domain {clip(host)!r}"
        if not self.app:
            self.set_reason("connect rejected: no app")
            return "No application name"
        self.vhost = vhost
        return None

    def _on_publish(self, req: PublishRequest) -> None:
        name, query = split_name(req.name)
        if not name or self.role == "play" or self.publications:
            self.session.reject_publish(req, f"Cannot publish {clip(req.name)!r} here")
            return
        if self._refused("publish", name, query):
            self.session.reject_publish(req, "Authentication failed")  # NetStream.Publish.BadName
            return
        key = StreamKey(self.vhost, self.app, name)
        control = self.deps.stream_control
        if control is not None and control.is_forbidden(key):  # ForbidStream (streamctl)
            log.info("rtmp publish %s from %s refused: forbidden", clip(key), self.remote)
            self.session.reject_publish(req, f"Stream {clip(name)} is forbidden")
            return
        try:
            pub = self.deps.hub.publish(key, kind=SourceKind.PUBLISHER, owner=self.remote)
        except StreamBusy as exc:
            log.info("rtmp publish %s from %s refused: %s", clip(key), self.remote, exc)
            self.session.reject_publish(req, f"Stream {clip(name)} is already being published")
            return
        pub.on_preempted = lambda: self._abort("preempted")
        self.publications[req.stream_id] = pub
        self.role = "publish"
        self.key = key
        self.session.accept_publish(req)
        self._watch(key)

    def _on_play(self, req: PlayRequest) -> None:
        if self.play_task is not None or self.role == "publish":
            self.session.play_not_found(req, "Already playing on this connection")
            return
        name, query = split_name(req.name)
        if self._refused("play", name, query):
            self.session.play_not_found(req, "Authentication failed", code=PLAY_FAILED)
            return
        self.role = "play"
        self.key = StreamKey(self.vhost, self.app, name)
        self.play_task = asyncio.create_task(self._play(req, self.key, query))
        if self._timer is not None:  # from now on the play task decides when this ends
            self._timer.cancel()
            self._timer = None

    def _refused(self, action: str, name: str, query: str) -> bool:
        """URL authentication at admission: True (and a log line naming the reason) when refused."""
        verifier = self.deps.urlauth
        if verifier is None:
            return False
        check = verifier.check_publish if action == "publish" else verifier.check_play
        refusal = check(self.vhost, self.app, name, query)
        if refusal is None:
            return False
        host = self.remote.rpartition(":")[0]
        self.server.warn.warning(
            f"auth-{action}-{refusal.reason}-{host}",
            "rtmp %s %s from %s refused: %s",
            action,
            clip(StreamKey(self.vhost, self.app, name)),
            self.remote,
            refusal.reason,
        )
        self.set_reason(f"{action} refused: {refusal.reason}")
        # Flush the refusal, then hang up (as after a refused connect): one guess per connection.
        self.session.closed = True
        return True

    def _on_stream_deleted(self, event: StreamDeleted) -> None:
        pub = self.publications.pop(event.stream_id, None)
        if pub is not None:
            self._unwatch()
            pub.close("unpublished")
            self.set_reason("unpublished")
            self.session.end_publish(event.stream_id)
        elif self.play_task is not None and self.role == "play":
            self.set_reason("stopped by player")
            self._abort(None)

    def set_reason(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason

    def _abort(self, reason: str | None) -> None:
        if reason:
            self.set_reason(reason)
        if self.transport is not None:
            self.transport.abort()  # connection_lost follows and cleans up

    def _end(self, reason: str) -> None:
        """End the connection now: what is queued for the peer (a refusal) is still sent."""
        self.set_reason(reason)
        self._cleanup()

    # ------------------------------------------------------------ playing

    async def _play(self, req: PlayRequest, key: StreamKey, query: str) -> None:
        deps = self.deps
        sub = await deps.hub.play(
            key,
            protocol="rtmp",
            remote=self.remote,
            query=query,
            timeout=deps.settings.relay.start_timeout_s,
        )
        if sub is None:
            self.set_reason("stream not found")
            self.session.play_not_found(req, f"No stream {clip(key.name)}")
            self.write(self.session.data_to_send())
            await self._close_after_write()
            return
        self.subscriber = sub
        sub.on_drop = lambda: self._abort("viewer too slow")
        session = self.session
        sid = req.stream_id
        self.play_stream_id = sid
        # frame.cache key of this viewer's chunk bytes (see media.rtmp.chunk.frame_chunks).
        self.chunk_key = ("rtmp", session.chunk_size, sid)
        transport = self.transport
        assert transport is not None
        session.start_play(req)
        self.write(session.data_to_send())
        pusher = PushWriter(
            sub,
            transport,
            self.chunk_key,
            functools.partial(frame_chunks, chunk_size=session.chunk_size, stream_id=sid),
            self._drain,
            backlog_bytes=WRITE_BACKLOG_BYTES,
            remote=self.remote,
        )
        try:
            ended = await pusher.run()
        except (ConnectionError, OSError):
            self.set_reason("viewer went away")
            ended = False
        finally:
            self.bytes_out += pusher.bytes_out
            if pusher.error is not None:
                self.set_reason(f"write failed: {pusher.error!r}")
            sub.close()
        if not ended:
            self._abort(None)
            return
        self.set_reason(f"end of stream ({sub.end_reason or 'eof'})")
        session.end_play(sid)
        self.write(session.data_to_send())
        await self._close_after_write()

    async def _close_after_write(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self._drain()
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------ end

    def _cleanup(self) -> None:
        """Close the publications, stop the player, free the session; the log line and the
        address slot follow once the play task (if any) has finished."""
        if self._cleaned:
            return
        self._cleaned = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._unwatch(closing=True)
        self.set_reason("closed by peer")
        for pub in self.publications.values():
            pub.close(self.end_reason or "closed")
        self.publications.clear()
        if self.subscriber is not None:
            self.subscriber.close()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()  # flushes what is queued (a refusal), then connection_lost
        task = self.play_task
        if task is not None and not task.done():
            task.cancel()
            task.add_done_callback(self._play_done)
        else:
            if task is not None:
                self._play_done(task)
            self._finish()

    def _play_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("rtmp %s: play task failed", self.remote, exc_info=task.exception())
        if self._cleaned:
            self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self.session.close()  # frees its buffers and budget now, not at the next GC
        self.server.connections.discard(self)
        self.server.cap.release(self.address)
        duration = time.monotonic() - self.started
        log.info(
            "rtmp %s %s %s in=%d out=%d %.1fs: %s",
            self.remote,
            self.role,
            clip(self.key) if self.key is not None else "-",
            self.bytes_in,
            self.bytes_out,
            duration,
            self.end_reason,
        )


class RtmpServer:
    """`await start(host, port) -> bound port`; `await close()` ends every connection."""

    def __init__(self, deps: ListenerDeps, limits: ListenerLimits | None = None) -> None:
        self.deps = deps
        media = deps.settings.media
        self.session_limits = RtmpLimits(
            message_bytes=media.max_message_bytes,
            command_bytes_before_connect=media.rtmp_command_bytes_before_connect,
            command_bytes=media.rtmp_command_bytes,
            data_bytes=media.rtmp_data_bytes,
            buffer_before_connect=media.rtmp_buffer_before_connect,
            buffer_before_publish=media.rtmp_buffer_before_publish,
            buffer_bytes=media.rtmp_buffer_bytes,
            amf0_max_elements=media.rtmp_amf0_max_elements,
            amf0_max_depth=media.rtmp_amf0_max_depth,
        )
        # Bytes buffered by all RTMP connections together (partial messages, unparsed input).
        self.budget = MemoryBudget(media.rtmp_buffer_total_bytes)
        self.limits = limits or ListenerLimits("rtmp", 0)
        self.warn = RateLimitedLog(log)
        self.cap = AddressCap(self.limits, self.warn)
        self._server: asyncio.base_events.Server | None = None
        self.connections: set[_Connection] = set()

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            functools.partial(_Connection, self), host, port, reuse_address=True
        )
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    @property
    def connection_count(self) -> int:
        return len(self.connections)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        conns = list(self.connections)
        for conn in conns:
            conn.set_reason("server closing")
            conn._cleanup()
        tasks = [c.play_task for c in conns if c.play_task is not None and not c.play_task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
