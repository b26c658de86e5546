"""A lean HTTP/1.1 front for HLS on the media listener: playlists, segments and parts
without aiohttp's per-request machinery.

An HLS player makes a request per playlist reload and per segment (hls.js at the live
edge: one of each per target duration; LL-HLS: several a second), each small work for the
node (the bodies are already in memory) but about 0.3 ms of aiohttp each (request and
response objects, URL and multidict parsing, routing, middlewares). Each connection of
the listener starts here instead:

- a request head for an HLS URL (`GET`/`HEAD`/`OPTIONS` on `/{app}/{stream}.m3u8` or
  `/{app}/{stream}/{name}`, no body, no percent-escapes in the path, a plain Host) is
  parsed here and answered by the transport-neutral `HlsHttp` (servers/hls.py): at once
  when nothing must wait (segments, parts, a known viewer's playlist), else in a task
  (new sessions, blocking reloads), one request at a time per connection;
- anything else (HTTP-FLV, /metrics, a malformed or unusual head, a body) hands the
  connection, with the bytes read so far, to the listener's aiohttp protocol for good:
  every behaviour there is aiohttp's, as before.

Kept from the aiohttp handler it stands in for: the per-address connection cap, the
deadline for the first request head, the keep-alive idle timeout (`ListenerLimits`),
HTTP/1.0 and 1.1 keep-alive rules, pipelined requests answered in order, HEAD (the
head of the GET, no body), and the HLS headers themselves (built by `HlsHttp`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from email.utils import formatdate
from typing import cast
from urllib.parse import parse_qsl

from ..hub import StreamKey
from ..sources.base import RELAY_VIA_HEADER
from .admission import HttpGuard
from .hls import HlsHttp, HlsReply, HlsRequest, with_via_marker
from .protocols import ListenerDeps
from .vhost import resolve_vhost

log = logging.getLogger("liverelay.http")

# Bodies this large (segments, LL-HLS parts) go out with sendfile(2) from an in-memory
# file written once per body: the kernel then sends the pages without a copy per viewer
# (what nginx does from its page cache), instead of copying the bytes on every write.
SENDFILE_MIN_BYTES = 128 * 1024  # segments (LL-HLS parts, smaller and many, are plain writes)
SENDFILE_CACHE = 16  # bodies with a file (LRU; each keeps its bytes alive): the live edges
SENDFILE_IDLE_S = 10.0  # a file not sent for this long is closed (no longer a live edge)
MAX_HEAD_BYTES = 16 * 1024  # larger heads go to aiohttp (which answers 431/400 as it does)
PAUSE_BUFFER_BYTES = 64 * 1024  # stop reading while this much waits behind a held request
_VIA = RELAY_VIA_HEADER.lower()
_BODY_HEADERS = frozenset(("content-length", "transfer-encoding", "upgrade", "expect"))
_SINGLE = frozenset(("host", "range", "if-none-match", "origin"))  # twice: aiohttp decides
_REASONS = {
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    416: "Range Not Satisfiable",
    503: "Service Unavailable",
}
_NO_BODY = frozenset((204, 304))
_STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, reason.encode()) for code, reason in _REASONS.items()}
_KEEP_ALIVE = b"Connection: keep-alive\r\n\r\n"
_CLOSE = b"Connection: close\r\n\r\n"
SMALL_BODY_BYTES = 64 * 1024  # a body this small is copied after its head (one write); larger: writev
# The request headers the HLS answer reads; the others are only checked for syntax.
_WANTED = frozenset(
    (
        "host",
        "connection",
        "range",
        "if-none-match",
        "origin",
        "accept-encoding",
        "access-control-request-headers",
        _VIA,
    )
)
_HOST_NAMES: dict[str, str | None] = {}  # Host header -> _host_name() (a pure function: memoised)
_HOST_NAMES_MAX = 256


_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
_VERSIONS = frozenset(("HTTP/1.1", "HTTP/1.0"))
_MAX_QUERY_FIELDS = 64


def _query(raw: str) -> dict[str, str] | None:
    """The first value of each query parameter (decoded), None when it has too many.
    Playlist and segment URIs carry `s=`, `v=` and the LL-HLS parameters, never escapes:
    those are split here; a query with `%` or `+` goes through parse_qsl, which gives the
    same result for the others."""
    if raw.count("&") >= _MAX_QUERY_FIELDS:
        return None  # parse_qsl's max_num_fields
    query: dict[str, str] = {}
    if "%" in raw or "+" in raw:
        try:
            for k, v in parse_qsl(raw, keep_blank_values=True, max_num_fields=_MAX_QUERY_FIELDS):
                query.setdefault(k, v)
        except ValueError:
            return None
        return query
    for item in raw.split("&"):
        if item:
            k, _, v = item.partition("=")
            query.setdefault(k, v)
    return query


def _header_lines(reply: HlsReply) -> bytes:
    """A reply's headers and Content-Length as HTTP/1.1 lines."""
    lines = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items()).encode("latin-1")
    if reply.status in _NO_BODY:
        return lines
    return lines + b"Content-Length: %d\r\n" % len(reply.body)


class HlsFastPath:
    """What the connections of one listener share; `wrap(guard)` is the protocol factory."""

    def __init__(self, http: HlsHttp, deps: ListenerDeps) -> None:
        self.http = http
        self.deps = deps
        self.handed_over = 0  # connections given to aiohttp
        self._date_second = -1
        self._date_line = b""
        # id(body) -> (body, fd, last sent), least recently sent first
        self._files: OrderedDict[int, tuple[bytes, int, float]] = OrderedDict()
        self._no_memfd = sys.platform != "linux"  # memfd_create(2) is Linux-only

    def body_file(self, body: bytes) -> int | None:
        """An in-memory file holding `body` (made on its first request), or None."""
        key = id(body)
        found = self._files.get(key)
        now = time.monotonic()
        if found is not None and found[0] is body:
            self._files.move_to_end(key)
            self._files[key] = (body, found[1], now)
            return found[1]
        if self._no_memfd:
            return None
        try:
            fd = os.memfd_create("hls", os.MFD_CLOEXEC)
        except OSError as exc:  # no memfd (old kernel, seccomp): plain writes from now on
            log.warning("hls: memfd_create failed (%s): segments are sent with plain writes", exc)
            self._no_memfd = True
            return None
        try:
            view = memoryview(body)
            written = 0
            while written < len(body):
                written += os.write(fd, view[written:])
        except OSError as exc:
            os.close(fd)
            log.warning("hls: writing a segment to memory failed (%s): sent with a plain write", exc)
            return None
        if found is not None:
            os.close(found[1])
        self._files[key] = (body, fd, now)
        while len(self._files) > SENDFILE_CACHE:
            _, (_, old, _) = self._files.popitem(last=False)
            os.close(old)
        return fd

    def drop_idle(self, now: float) -> None:
        """Close the files of bodies not sent for SENDFILE_IDLE_S (the HLS janitor calls it),
        so a node whose viewers left holds none."""
        files = self._files
        while files:
            key, (_, fd, used) = next(iter(files.items()))
            if now - used < SENDFILE_IDLE_S:
                return
            del files[key]
            os.close(fd)

    def close(self) -> None:
        for _, fd, _ in self._files.values():
            os.close(fd)
        self._files.clear()

    def wrap(self, guard: HttpGuard) -> Callable[[], asyncio.Protocol]:
        return lambda: HlsConnection(self, guard)

    def date_line(self) -> bytes:
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date_line = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._date_line

    def vhost(self, host: str) -> str | None:
        return resolve_vhost(self.deps, host)


def _host_name(host: str) -> str | None:
    """The name of a plain `name[:port]` Host header, else None (aiohttp judges the rest)."""
    try:
        return _HOST_NAMES[host]
    except KeyError:
        pass
    if len(_HOST_NAMES) >= _HOST_NAMES_MAX:
        _HOST_NAMES.clear()  # many different Host values: start over (each is cheap to redo)
    name = _HOST_NAMES[host] = _parse_host(host)
    return name


def _parse_host(host: str) -> str | None:
    name, sep, port = host.rpartition(":")
    if not sep:
        name = host
    elif not (port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        return None
    if not name or name.startswith("[") or not all(c.isalnum() or c in ".-_" for c in name):
        return None
    return name.lower()


class HlsConnection(asyncio.Protocol):
    """One connection of the media listener, until it asks for something that is not HLS."""

    def __init__(self, fast: HlsFastPath, guard: HttpGuard) -> None:
        self.fast = fast
        self.guard = guard
        self.transport: asyncio.Transport | None = None
        self.address: str | None = None
        self.peer = "?"
        self.buf = b""
        self.task: asyncio.Task[HlsReply] | None = None
        self.pending: tuple[HlsRequest, bool, bool] | None = None
        self.writing_paused = False
        self.sock_fd = -1  # for sendfile(2); -1: plain writes only
        self.requests = 0
        self.last_active = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tcp = cast(asyncio.Transport, transport)  # a TCP listener's transport
        self.transport = tcp
        peer = transport.get_extra_info("peername")
        self.address = self.guard.cap.acquire(peer)
        if self.address is None:
            tcp.abort()
            return
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.sock_fd = sock.fileno()
        self.last_active = time.monotonic()
        self._arm(self.guard.limits.header_timeout_s)

    def data_received(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        if self.task is None:
            self._serve_guarded()
        elif len(self.buf) > PAUSE_BUFFER_BYTES and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        return False  # the client is done sending: close once our writes are out

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.transport is not None and self.task is None:
            self.transport.resume_reading()
            self._serve_guarded()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.task is not None:
            self.task.cancel()  # a held request of a client that left
            self.task = None
        self.guard.cap.release(self.address)
        self.address = None
        self.transport = None

    # -- timers --------------------------------------------------------------------

    def _arm(self, delay: float) -> None:
        if delay > 0:
            self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        """The head deadline before the first request, the keep-alive idle timeout after."""
        self._timer = None
        if self.transport is None:
            return
        limits = self.guard.limits
        if self.task is not None:  # a held request is not idleness: look again later
            self._arm(limits.idle_timeout_s)
            return
        if not self.requests:
            self.guard.warn.warning(
                f"head:{limits.name}",
                "%s listener: %s sent no complete request head within %.1fs: closed",
                limits.name,
                self.peer,
                limits.header_timeout_s,
            )
            self.transport.abort()
            return
        idle = time.monotonic() - self.last_active
        if idle >= limits.idle_timeout_s:
            self.transport.close()
        else:  # re-armed lazily: no timer churn per request
            self._arm(limits.idle_timeout_s - idle)

    # -- requests ------------------------------------------------------------------

    def _serve_guarded(self) -> None:
        try:
            self._serve()
        except Exception:  # a bug must cost this connection only, with a trace in the log
            log.exception("hls request from %s failed", self.peer)
            if self.transport is not None:
                self.transport.abort()

    def _serve(self) -> None:
        """Answer every complete request head buffered, in order; stop at one that must wait."""
        transport = self.transport
        while transport is not None and self.task is None and not transport.is_closing():
            if self.writing_paused:
                transport.pause_reading()  # resume_writing carries on
                return
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD_BYTES:
                    self._hand_over()
                return
            parsed = self._parse(self.buf[:end])
            if parsed is None:
                self._hand_over()
                return
            self.buf = self.buf[end + 4 :]
            if not self.requests and self._timer is not None:
                self._timer.cancel()  # the head deadline is met; the idle timer takes over
                self._timer = None
                self._arm(self.guard.limits.idle_timeout_s)
            self.requests += 1
            req, keep_alive, head_only = parsed
            reply = self.fast.http.immediate(req)
            if reply is None:
                self.pending = parsed
                self.task = asyncio.get_running_loop().create_task(self.fast.http.handle(req))
                self.task.add_done_callback(self._answered)
                if self.buf:
                    transport.pause_reading()
                return
            self._send(reply, keep_alive, head_only)
        return

    def _answered(self, task: asyncio.Task[HlsReply]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            log.error("hls request from %s failed", self.peer, exc_info=exc)
        if task is not self.task:
            return  # cancelled by connection_lost
        self.task = None
        pending, self.pending = self.pending, None
        if task.cancelled() or self.transport is None or pending is None:
            return
        if exc is not None:
            self.transport.abort()
            return
        _, keep_alive, head_only = pending
        self._send(task.result(), keep_alive, head_only)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
            self._serve_guarded()

    def _send(self, reply: HlsReply, keep_alive: bool, head_only: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        status = reply.status
        wire = reply.wire
        if not wire:
            wire = reply.wire = _header_lines(reply)
        head = b"".join(
            (
                _STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status,
                self.fast.date_line(),
                wire,
                _KEEP_ALIVE if keep_alive else _CLOSE,
            )
        )
        body = reply.body
        if not body or head_only or status in _NO_BODY:
            transport.write(head)
        elif len(body) < SMALL_BODY_BYTES:
            transport.write(head + body)  # one send: a copy of a few KB is cheaper than writev
        elif not (status == 200 and len(body) >= SENDFILE_MIN_BYTES and self._sendfile(head, body)):
            transport.writelines((head, body))  # one writev with the head
        self.last_active = time.monotonic()
        if not keep_alive:
            transport.close()

    def _sendfile(self, head: bytes, body: bytes) -> bool:
        """The head through the transport, then the body with sendfile(2) as far as the
        socket takes it at once, the rest through the transport; False: not done (write it)."""
        transport = self.transport
        if transport is None or self.sock_fd < 0 or transport.get_write_buffer_size():
            return False
        fd = self.fast.body_file(body)
        if fd is None:
            return False
        transport.write(head)
        if transport.get_write_buffer_size():
            transport.write(body)  # the head is still queued: keep the order
            return True
        sent = 0
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while sent < len(body):
                n = os.sendfile(self.sock_fd, fd, sent, len(body) - sent)
                if n <= 0:
                    break
                sent += n
        if sent < len(body):
            transport.write(memoryview(body)[sent:])
        return True

    def _parse(self, head: bytes) -> tuple[HlsRequest, bool, bool] | None:
        """(request, keep-alive, HEAD) for an HLS request this path answers, else None."""
        text = head.decode("latin-1")  # decodes every byte
        request_line, _, fields = text.partition("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3:
            return None
        method, target, version = parts
        if method not in _METHODS or version not in _VERSIONS:
            return None
        path, _, raw_query = target.partition("?")
        if not path.startswith("/") or "%" in path or "{" in path or "}" in path or "#" in target:
            return None
        pieces = path.split("/")
        if len(pieces) == 3 and pieces[2].endswith(".m3u8") and len(pieces[2]) > 5:
            app, stream, name = pieces[1], pieces[2][:-5], None
        elif len(pieces) == 4 and pieces[3]:
            app, stream, name = pieces[1], pieces[2], pieces[3]
        else:
            return None
        if not app or not stream:
            return None
        headers: dict[str, str] = {}
        if fields:
            for line in fields.split("\r\n"):
                field, sep, value = line.partition(":")
                if not sep or not field or field[0] in " \t" or field[-1] in " \t":
                    return None
                field = field.lower()
                if field in _WANTED:
                    if field in _SINGLE and field in headers:
                        return None
                    headers[field] = value.strip(" \t")
                elif field in _BODY_HEADERS:
                    return None
        host = headers.get("host")
        if host is None:
            return None
        host_name = _host_name(host)
        if host_name is None:
            return None
        vhost = self.fast.vhost(host_name)
        if vhost is None:
            return None  # aiohttp answers the unknown domain
        connection = headers.get("connection", "").lower()
        # HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 only when asked.
        keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        query = _query(raw_query) if raw_query else {}
        if query is None:
            return None
        req = HlsRequest(
            method="GET" if method == "HEAD" else method,
            key=StreamKey(vhost, app, stream),
            name=name,
            query=query,
            raw_query=raw_query,
            remote=self.peer,
            play_query=with_via_marker(raw_query, headers.get(_VIA)),
            if_none_match=headers.get("if-none-match"),
            range=headers.get("range"),
            accept_encoding=headers.get("accept-encoding", ""),
            origin=headers.get("origin"),
            request_headers=headers.get("access-control-request-headers"),
        )
        return req, keep_alive, method == "HEAD"

    def _hand_over(self) -> None:
        """Give the connection, with what it sent so far, to aiohttp (for good)."""
        transport = self.transport
        if transport is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.fast.handed_over += 1
        self.guard.cap.release(self.address)  # the aiohttp protocol takes its own slot
        self.address = None
        self.transport = None
        inner = self.guard()
        transport.set_protocol(inner)
        inner.connection_made(transport)
        if self.requests:
            inner.mark_request()  # the head deadline was met here already
        buf, self.buf = self.buf, b""
        if buf and not transport.is_closing():
            inner.data_received(buf)
        transport.resume_reading()
