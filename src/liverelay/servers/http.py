"""The media HTTP listener: HTTP-FLV playback, /metrics and /healthz.

GET /{app}/{stream}.flv streams the FLV header, then the hub's frames as FLV tags,
one socket write per batch the subscriber hands over (a batch is everything queued
since the previous write, so a slow moment costs fewer, larger writes). HTTP/1.1
gets chunked transfer encoding, HTTP/1.0 a body delimited by the connection close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..hub import Hub, StreamKey, Subscriber
from ..media.flv import flv_header, flv_tag

log = logging.getLogger("liverelay.http")

NODE_KEY: web.AppKey[Any] = web.AppKey("liverelay_node", object)

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


def create_http_app(node: Any) -> web.Application:
    """`node` provides settings, hub, domains (vhost_for(host), may be None) and metrics."""
    app = web.Application()
    app[NODE_KEY] = node
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/{app}/{stream}.flv", _play_flv)
    app.router.add_route("OPTIONS", "/{app}/{stream}.flv", _preflight)
    return app


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _metrics(request: web.Request) -> web.Response:
    registry = request.app[NODE_KEY].metrics
    body = generate_latest(registry) if registry is not None else b""
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _preflight(request: web.Request) -> web.Response:
    headers = dict(CORS_HEADERS)
    headers["Access-Control-Allow-Headers"] = request.headers.get("Access-Control-Request-Headers", "*")
    headers["Access-Control-Max-Age"] = "86400"
    return web.Response(status=204, headers=headers)


def vhost_for_request(node: Any, host: str | None) -> str | None:
    """The vhost of a request's Host (port stripped), else the default vhost; None = refuse."""
    domains = node.domains
    if domains is not None and host:
        vhost = domains.vhost_for(host.lower().rstrip("."))
        if vhost:
            return vhost
    return node.settings.media.default_vhost or None


def _not_found(text: str) -> web.Response:
    return web.Response(status=404, text=text + "\n", headers=CORS_HEADERS)


async def _play_flv(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE_KEY]
    hub: Hub = node.hub
    vhost = vhost_for_request(node, request.url.host)
    if vhost is None:
        return _not_found("unknown domain")
    key = StreamKey(vhost, request.match_info["app"], request.match_info["stream"])
    remote = _remote(request)
    sub = await hub.play(
        key,
        protocol="http-flv",
        remote=remote,
        query=request.rel_url.raw_query_string,  # undecoded: may carry signatures
        timeout=node.settings.relay.start_timeout_s,
    )
    if sub is None:
        return _not_found("stream not found")
    started = time.monotonic()
    reason = "eof"
    resp = web.StreamResponse(
        status=200,
        headers={**CORS_HEADERS, "Content-Type": "video/x-flv", "Cache-Control": "no-cache"},
    )
    try:
        writer = await resp.prepare(request)
        transport = request.transport
        if transport is None or writer is None:
            raise ConnectionResetError("client left before the response started")
        _limit_send_buffer(transport)
        # A viewer the hub drops for being slow may be blocked in a write to a
        # client that stopped reading: abort the socket so the write fails now.
        sub.on_drop = transport.abort
        chunked = resp.headers.get("Transfer-Encoding", "").lower() == "chunked"
        await _stream_flv(sub, transport, writer, chunked)
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
            key,
            sub.bytes_out,
            time.monotonic() - started,
            reason,
        )
    return resp


async def _stream_flv(
    sub: Subscriber, transport: asyncio.Transport, writer: AbstractStreamWriter, chunked: bool
) -> None:
    """Write the FLV header, then every batch as one transport write (framed as one
    HTTP chunk when the response is chunked). Straight to the transport: aiohttp's
    per-write bookkeeping costs more than the write itself at hundreds of viewers."""
    stream = sub.stream
    known = stream.has_audio or stream.has_video
    pieces: list[bytes] = [flv_header(stream.has_audio or not known, stream.has_video or not known)]
    read = sub.read
    while True:
        size = sum(len(p) for p in pieces)
        if chunked:
            pieces.insert(0, b"%x\r\n" % size)
            pieces.append(b"\r\n")
        if transport.is_closing():
            raise ConnectionResetError("client gone")
        transport.write(b"".join(pieces) if len(pieces) > 1 else pieces[0])
        sub.add_bytes_out(size)
        if transport.get_write_buffer_size() > WRITE_BUFFER_HIGH:
            await writer.drain()  # waits while the transport is paused (the client reads slowly)
        batch = await read()
        if not batch:
            return
        pieces = [f.cache.get("flv") or flv_tag(f) for f in batch]


def _limit_send_buffer(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and VIEWER_SEND_BUFFER:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, VIEWER_SEND_BUFFER)


def _remote(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return request.remote or "?"
