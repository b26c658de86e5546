"""RTMP pull source: play a stream from an origin (another liverelay, nginx-rtmp, SRS, a CDN).

Time to first frame matters here (a viewer is waiting), so the client keeps round
trips to the minimum the protocol allows: C2 and connect leave in one write,
createStream right after connect's _result, play right after createStream's, and
TCP_NODELAY is set so none of those small writes waits for a delayed ACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..config import RelaySettings
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
from .base import RELAY_VIA_PARAM, FrameSink, SourceError, current_relay_via
from .policy import pinned_addresses

log = logging.getLogger("liverelay.sources.rtmp")

READ_SIZE = 256 * 1024


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
    writer: asyncio.StreamWriter | None = None
    try:
        try:
            async with asyncio.timeout(settings.connect_timeout_s):
                addresses = await pinned_addresses(target.host, settings)
                reader, writer = await _open_pinned(target, addresses)
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                session.initiate()
                writer.write(session.data_to_send())
                # Handshake + connect must finish within the connect timeout too.
                while not session.connected:
                    await _exchange(reader, writer, session, sink, media_started=False)
        except TimeoutError:
            raise SourceError(
                "timeout",
                f"no RTMP connect to {target.host}:{target.port} within {settings.connect_timeout_s}s",
            ) from None
        except OSError as exc:
            raise SourceError("connect", f"cannot connect to {target.host}:{target.port}: {exc}") from None
        media_started = False
        while True:
            limit = settings.no_media_timeout_s if media_started else settings.first_frame_timeout_s
            try:
                async with asyncio.timeout(limit):
                    got_media = await _exchange(reader, writer, session, sink, media_started=media_started)
            except TimeoutError:
                what = "media" if media_started else "first frame"
                raise SourceError("timeout", f"no {what} from {url} within {limit}s") from None
            except OSError as exc:
                if media_started:
                    log.info("rtmp pull %s: connection lost after media: %s", url, exc)
                    return
                raise SourceError("eof", f"{url}: connection lost before any media: {exc}") from None
            if got_media is None:
                return  # clean end of stream
            media_started = media_started or got_media
    except RtmpError as exc:
        raise SourceError("protocol", f"{url}: {exc.reason}") from None
    finally:
        session.close()
        if writer is not None:
            writer.transport.abort()


async def _open_pinned(
    target: RtmpUrl, addresses: tuple[str, ...]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the first of the policy-checked addresses that answers (never to a fresh
    lookup of the name); TLS still verifies and sends SNI for the URL's host name."""
    last: OSError | None = None
    for address in addresses:
        try:
            return await asyncio.open_connection(
                address,
                target.port,
                ssl=ssl.create_default_context() if target.tls else None,
                server_hostname=target.host if target.tls else None,
                limit=READ_SIZE,
            )
        except OSError as exc:
            last = exc
    raise last or OSError(f"no address for {target.host}")


def _wait_for_republish(sink: FrameSink, had_media: bool) -> bool:
    """The origin's publisher left: True when the sink keeps this connection for its return
    (the decision is made in order, before any frame that follows in the same read)."""
    return had_media and sink.on_unpublished()


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    session: RtmpClientSession,
    sink: FrameSink,
    *,
    media_started: bool,
) -> bool | None:
    """One read: feed the session, deliver frames, send replies.

    Returns True when media arrived, False when not, None at a clean end of stream.
    """
    data = await reader.read(READ_SIZE)
    if not data:
        if media_started:
            return None
        raise SourceError("eof", "origin closed the connection before any media")
    events = session.receive_data(data)
    out = session.data_to_send()
    if out:
        writer.write(out)
    got_media = False
    ended = False
    for event in events:
        if type(event) is MediaReceived:
            sink.on_frame(event.frame)
            got_media = True
        elif isinstance(event, StatusEvent):
            if event.code == m.PLAY_STREAM_NOT_FOUND:
                raise SourceError("protocol", f"stream not found at origin ({event.description})")
            if event.code == m.PLAY_UNPUBLISH_NOTIFY:
                # nginx-rtmp (`publish_notify on`) and SRS keep the player and send
                # PublishNotify and fresh media when the publisher returns.
                ended = ended or not _wait_for_republish(sink, media_started or got_media)
            elif event.code == m.PLAY_STOP:
                ended = True
            elif event.code == m.PLAY_PUBLISH_NOTIFY:
                log.debug("rtmp pull: the origin's publisher is back")
            elif event.level == "error":
                raise SourceError("protocol", f"origin refused: {event.code} {event.description}")
        elif isinstance(event, StreamEof) and event.stream_id == session.stream_id:
            # nginx-rtmp sends StreamEOF when its publisher leaves, keeps the player and
            # resumes with StreamBegin and fresh media when the publisher returns.
            ended = ended or not _wait_for_republish(sink, media_started or got_media)
        elif isinstance(event, ConnectFailed):
            desc = event.info.get("description") or event.info.get("code") or "connect rejected"
            raise SourceError("protocol", f"origin rejected connect: {desc}")
        elif isinstance(event, CommandFailed):
            raise SourceError("protocol", f"origin refused {event.command}: {event.info!r}")
    if ended:
        if media_started or got_media:
            return None
        raise SourceError("eof", "origin ended the stream before any media")
    if out:
        await writer.drain()
    return got_media
