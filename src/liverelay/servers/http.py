"""The media HTTP listener: HTTP-FLV playback, /metrics and /healthz.

GET /{app}/{stream}.flv streams the FLV header, then the hub's frames as FLV tags.
Each viewer runs in push mode (Subscriber.set_waker): the hub's fan-out hands it a
batch about every 50 ms of media and the batch goes out in one write, with no task
switch per viewer; the handler task only waits for a drain when the client reads
slowly (the shared push-writer, servers/sink.py). HTTP/1.1 gets chunked transfer
encoding, HTTP/1.0 a body delimited by the connection close. The tag bytes are built
once per frame (flv_tag memoises).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..hub import StreamKey
from ..media.flv import flv_header, flv_tag
from ..sources.base import RELAY_VIA_HEADER
from .admission import PROTOCOL_WRAPPER_KEY, RateLimitedLog
from .hls import HlsCollector, HlsHttp, HlsService, HttpHooks, add_hls_routes, with_via_marker
from .hlsfast import HlsFastPath
from .peertext import clip
from .playauth import play_auth_middleware
from .protocols import ListenerDeps, MediaHub
from .sink import PushWriter
from .vhost import resolve_vhost

log = logging.getLogger("liverelay.http")
_BAD_REQUEST_LOG = RateLimitedLog(log)

DEPS_KEY: web.AppKey[ListenerDeps] = web.AppKey("liverelay_deps", ListenerDeps)

# Kernel send buffer of a viewer socket. Linux autotunes it up to tcp_wmem max (4 MiB):
# a viewer that stops reading would then hide half a minute of a 1 Mbit/s stream in the
# kernel before the hub's bounded queue even notices. A fixed size keeps the hub queue
# the real bound (the kernel doubles the value; 512 KiB is ~80 ms of 50 Mbit/s).
VIEWER_SEND_BUFFER = 256 * 1024
# Past this many bytes buffered in the transport, wait for it to drain before reading more.
WRITE_BUFFER_HIGH = 64 * 1024

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, OPTIONS",
    "Access-Control-Expose-Headers": "Content-Type",
}

FLV_RESPONSE_HEADERS = {**CORS_HEADERS, "Content-Type": "video/x-flv", "Cache-Control": "no-cache"}


def create_http_app(deps: ListenerDeps) -> web.Application:
    """`deps`: the settings, the hub, the domain table (may be None), the metrics registry and
    the URL-auth verifier (may be None)."""
    app = web.Application(middlewares=[play_auth_middleware(deps, _remote)])  # URL auth: .flv / .m3u8
    app[DEPS_KEY] = deps
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/{app}/{stream}.flv", _play_flv)
    app.router.add_route("OPTIONS", "/{app}/{stream}.flv", _preflight)
    if deps.settings.media.hls_enabled:
        hls = HlsService(deps.hub, deps.settings.media, deps.settings.relay.start_timeout_s)
        http = HlsHttp(hls, deps.urlauth)
        add_hls_routes(app, http, HttpHooks(_stream_key, _play_query, _remote))
        # HLS requests skip aiohttp on the node's listener (servers/hlsfast.py); the routes
        # above serve the connections it hands over.
        fast = HlsFastPath(http, deps)
        app[PROTOCOL_WRAPPER_KEY] = fast.wrap
        hls.on_sweep.append(fast.drop_idle)

        async def close_fast_path(_: web.Application) -> None:
            fast.close()

        app.on_cleanup.append(close_fast_path)
        if deps.metrics is not None:
            deps.metrics.register(HlsCollector(hls))
    return app


def _stream_key(request: web.Request, app: str, stream: str) -> StreamKey | web.Response:
    """The hub key a media request names (vhost from its Host), or the error to answer."""
    try:
        host = request.url.host  # yarl parses the Host header here
    except ValueError as exc:  # a port out of range, a malformed host
        _BAD_REQUEST_LOG.warning(
            "bad-host", "http %s: bad Host header %r: %s", _remote(request), clip(request.host), exc
        )
        return web.Response(status=400, text="bad Host header\n", headers=CORS_HEADERS)
    vhost = resolve_vhost(request.app[DEPS_KEY], host)
    if vhost is None:
        return _not_found("unknown domain")
    return StreamKey(vhost, app, stream)


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _metrics(request: web.Request) -> web.Response:
    registry = request.app[DEPS_KEY].metrics
    body = generate_latest(registry) if registry is not None else b""
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _preflight(request: web.Request) -> web.Response:
    headers = dict(CORS_HEADERS)
    headers["Access-Control-Allow-Headers"] = request.headers.get("Access-Control-Request-Headers", "*")
    headers["Access-Control-Max-Age"] = "86400"
    return web.Response(status=204, headers=headers)


def _not_found(text: str) -> web.Response:
    return web.Response(status=404, text=text + "\n", headers=CORS_HEADERS)


def _play_query(request: web.Request) -> str:
    """The query for the hub: undecoded (it may carry signatures), plus a relay's loop marker."""
    return with_via_marker(request.rel_url.raw_query_string, request.headers.get(RELAY_VIA_HEADER))


async def _play_flv(request: web.Request) -> web.StreamResponse:
    deps = request.app[DEPS_KEY]
    hub: MediaHub = deps.hub
    key = _stream_key(request, request.match_info["app"], request.match_info["stream"])
    if isinstance(key, web.Response):
        return key
    if request.method == "HEAD":  # no body may follow: answer without becoming a viewer
        found = hub.get(key)
        if found is None or not found.has_source:
            return _not_found("stream not found")
        return web.Response(headers=FLV_RESPONSE_HEADERS)
    remote = _remote(request)
    sub = await hub.play(
        key,
        protocol="http-flv",
        remote=remote,
        query=_play_query(request),
        timeout=deps.settings.relay.start_timeout_s,
    )
    if sub is None:
        return _not_found("stream not found")
    started = time.monotonic()
    reason = "eof"
    resp = web.StreamResponse(status=200, headers=FLV_RESPONSE_HEADERS)
    try:
        writer = await resp.prepare(request)
        transport = request.transport
        if transport is None or writer is None:
            raise ConnectionResetError("client left before the response started")
        _tune_viewer_socket(transport)
        # A viewer the hub drops for being slow may be blocked in a write to a
        # client that stopped reading: abort the socket so the write fails now.
        sub.on_drop = transport.abort
        chunked = resp.headers.get("Transfer-Encoding", "").lower() == "chunked"
        stream = sub.stream
        known = stream.has_audio or stream.has_video
        pusher = PushWriter(
            sub,
            transport,
            "flv",
            flv_tag,
            writer.drain,
            backlog_bytes=WRITE_BUFFER_HIGH,
            remote=remote,
            wrap=_chunk if chunked else None,
            prefix=[flv_header(stream.has_audio or not known, stream.has_video or not known)],
        )
        if not await pusher.run():
            raise ConnectionResetError("client gone")
        await resp.write_eof()
        reason = sub.end_reason or "eof"
    except (ConnectionError, asyncio.CancelledError) as exc:
        reason = sub.end_reason if sub.end_reason == "slow" else f"client gone ({type(exc).__name__})"
        if isinstance(exc, asyncio.CancelledError):
            raise
    finally:
        sub.close()
        log.info(
            "http-flv viewer %s %s ended: %d bytes in %.1fs (%s)",
            remote,
            clip(key),
            sub.bytes_out,
            time.monotonic() - started,
            reason,
        )
    return resp


def _chunk(pieces: list[bytes], size: int) -> list[bytes]:
    """HTTP/1.1 chunked framing around one batch (aiohttp's writer is bypassed)."""
    return [b"%x\r\n" % size, *pieces, b"\r\n"]


def _tune_viewer_socket(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        # aiohttp sets it too; a stream must never wait for Nagle + delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if VIEWER_SEND_BUFFER:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, VIEWER_SEND_BUFFER)


def _remote(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return request.remote or "?"
