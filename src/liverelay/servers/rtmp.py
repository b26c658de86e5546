"""The RTMP listener: asyncio glue between sockets, media.rtmp sessions and the hub.

One task per connection reads and feeds the sans-IO session. A player is fed in the
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
from .admission import AddressCap, ListenerLimits, RateLimitedLog
from .peertext import clip
from .protocols import ListenerDeps
from .sink import PushWriter
from .vhost import resolve_vhost

log = logging.getLogger("liverelay.rtmp")

READ_SIZE = 256 * 1024
# Past this many unsent bytes a viewer's writer waits for the socket (backpressure).
WRITE_BACKLOG_BYTES = 256 * 1024


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


def set_nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Connection:
    """State of one accepted connection; lives as long as its handler task."""

    def __init__(
        self, server: RtmpServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.deps = server.deps
        media = self.deps.settings.media
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)
        self.session = RtmpServerSession(
            chunk_size=media.rtmp_chunk_size,
            limits=server.session_limits,
            budget=server.budget,
            connect_handler=self._on_connect,
        )
        self.vhost = ""
        self.app = ""
        self.role = "-"
        self.key: StreamKey | None = None
        self.publications: dict[int, Publication] = {}
        self.play_task: asyncio.Task[None] | None = None
        self.play_stream_id = 0
        self.chunk_key: tuple[str, int, int] = ("rtmp", 0, 0)
        self.transport: asyncio.WriteTransport = writer.transport
        self.subscriber: Subscriber | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.started = time.monotonic()
        now = asyncio.get_running_loop().time()
        self.progress_at = now  # loop time of the last whole message (the idle clock)
        self.setup_deadline = now + media.rtmp_setup_timeout_s
        self.end_reason: str | None = None  # the first reason given wins

    # ------------------------------------------------------------ I/O

    def write(self, data: bytes) -> None:
        if data and not self.writer.is_closing():
            self.writer.write(data)
            self.bytes_out += len(data)

    async def run(self) -> None:
        media = self.deps.settings.media
        set_nodelay(self.writer)
        try:
            async with asyncio.timeout(media.handshake_timeout_s):
                while not self.session.handshake_done:
                    await self._read_once()
            # Re-arming a timer on every read cost more than the read (a publisher's
            # message comes in two or three): the deadline is pushed back only once the
            # idle clock has moved past it, by this slack, so it fires at most this late.
            slack = min(1.0, media.idle_timeout_s / 8)
            while True:
                if self.play_task is None:
                    async with asyncio.timeout_at(self._deadline()) as bound:
                        while self.play_task is None:
                            await self._read_once()
                            deadline = self._deadline()
                            if deadline > (bound.when() or 0):
                                bound.reschedule(deadline + slack)
                else:
                    # A player may stay silent for hours; its socket's life is the play task's.
                    await self._read_once()
        except _ConnectionEnd as exc:
            self.set_reason(str(exc))
        except RtmpError as exc:
            if exc.internal:  # our bug, not the peer's: keep the traceback
                log.error("rtmp %s: internal error", self.remote, exc_info=exc)
            self.set_reason(f"protocol error: {clip(exc.reason)}")
        except TimeoutError:
            self.set_reason(
                "handshake timeout"
                if not self.session.handshake_done
                else "setup timeout"
                if self.role == "-"
                else "idle timeout"
            )
        except (ConnectionError, OSError) as exc:
            self.set_reason(f"socket error: {exc}")
        except asyncio.CancelledError:
            self.set_reason("server closing")
            raise
        finally:
            await self._cleanup()

    def _deadline(self) -> float:
        # Bytes alone are no progress (a peer may trickle one byte at a time): the idle
        # clock restarts only when a whole message arrives, and the setup (to
        # publish/play) has an overall deadline.
        deadline = self.progress_at + self.deps.settings.media.idle_timeout_s
        if self.role == "-":
            deadline = min(deadline, self.setup_deadline)
        return deadline

    async def _read_once(self) -> None:
        data = await self.reader.read(READ_SIZE)
        if not data:
            raise _ConnectionEnd("closed by peer")
        self.bytes_in += len(data)
        events = self.session.receive_data(data)
        if events:
            self.progress_at = asyncio.get_running_loop().time()
        for event in events:
            if type(event) is MediaReceived:
                pub = self.publications.get(event.stream_id)
                if pub is not None:
                    pub.write(event.frame)
            else:
                self._on_event(event)
        # Auto-replies and the answers queued above, in order: the session's one way out.
        self.write(self.session.data_to_send())
        await self._drain()
        if self.session.closed:
            raise _ConnectionEnd("session closed")

    async def _drain(self) -> None:
        if not self.writer.is_closing():
            await self.writer.drain()

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
        self.writer.transport.abort()

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
        self.transport = self.writer.transport
        session.start_play(req)
        self.write(session.data_to_send())
        pusher = PushWriter(
            sub,
            self.transport,
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
        self.writer.close()

    # ------------------------------------------------------------ end

    async def _cleanup(self) -> None:
        self.set_reason("closed by peer")
        for pub in self.publications.values():
            pub.close(self.end_reason or "closed")
        self.publications.clear()
        task = self.play_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.subscriber is not None:
            self.subscriber.close()
        if not self.writer.is_closing():
            self.writer.close()
        self.session.close()  # frees its buffers and budget now, not at the next GC
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
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(
            self._accept, host, port, reuse_address=True, limit=READ_SIZE
        )
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        address = self.cap.acquire(writer.get_extra_info("peername"))
        if address is None:
            writer.transport.abort()
            return
        if task is not None:
            self._tasks.add(task)
        try:
            await _Connection(self, reader, writer).run()
        except asyncio.CancelledError:
            # close() cancels us. Returning normally matters: asyncio's stream callback calls
            # task.exception() and would log every cancelled connection as an error.
            pass
        except Exception:  # never let one connection's bug reach the listener
            log.exception("rtmp connection handler failed")
        finally:
            self.cap.release(address)
            if task is not None:
                self._tasks.discard(task)

    @property
    def connection_count(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
