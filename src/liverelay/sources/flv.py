"""HTTP-FLV source: GET an http(s):// URL and decode the FLV body into frames.

The URL is sent exactly as given (the relay appends its query parameters, which may
carry signatures that any re-encoding would break). Redirects are not followed: the
source policy (allow/deny CIDRs) is checked on the configured URL, and a redirect
could point anywhere; a 3xx is reported as an http_status failure naming the target.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from ..config import RelaySettings
from ..media.flv import FlvDecoder, FlvError
from ..media.frame import Frame
from .base import RELAY_VIA_HEADER, FrameSink, SourceError, current_relay_via, redact_url
from .policy import pinned_addresses

log = logging.getLogger("liverelay.sources.flv")

USER_AGENT = "liverelay"
MAX_TAG_BYTES = 16 << 20


async def pull(url: str, sink: FrameSink, *, settings: RelaySettings) -> None:
    """Feed `sink` until the origin ends the body (return) or fails (SourceError)."""
    timeout = aiohttp.ClientTimeout(
        total=None,
        connect=settings.connect_timeout_s,
        sock_connect=settings.connect_timeout_s,
        sock_read=settings.no_media_timeout_s,
    )
    shown = redact_url(url)  # error messages end up in status and webhooks: no secrets
    got_response = False
    try:
        connector = await pinned_connector(url, settings)
        async with aiohttp.ClientSession(
            timeout=timeout,
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
        ) as session:
            async with asyncio.timeout(settings.connect_timeout_s):
                response = await session.get(
                    URL(url, encoded=True), headers=request_headers(), allow_redirects=False
                )
            got_response = True
            async with response:
                if response.status != 200:
                    where = response.headers.get("Location")
                    detail = f" (redirect to {redact_url(where)}, not followed)" if where else ""
                    raise SourceError("http_status", f"HTTP {response.status} from {shown}{detail}")
                await _read_body(response, sink)
    except SourceError:
        raise
    except FlvError as exc:
        raise SourceError("protocol", f"bad FLV from {shown}: {exc}") from None
    except TimeoutError:
        what = "no media" if got_response else "no HTTP response"
        raise SourceError("timeout", f"{what} from {shown} in time") from None
    except aiohttp.ClientConnectorError as exc:
        raise SourceError("connect", f"cannot connect to {shown}: {exc.os_error or exc}") from None
    except aiohttp.ClientPayloadError as exc:
        raise SourceError("eof", f"{shown} ended mid-stream: {exc}") from None
    except (aiohttp.ClientError, OSError) as exc:
        reason = "eof" if got_response else "connect"
        raise SourceError(reason, f"{shown}: {type(exc).__name__}: {exc}") from None


class PinnedResolver(AbstractResolver):
    """aiohttp's resolver for one pull: the policy-checked addresses of the URL's host and
    nothing else (the URL keeps the name, so Host and TLS SNI/verification use it)."""

    def __init__(self, host: str, addresses: tuple[str, ...]) -> None:
        self.host = host.lower()
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.lower() != self.host:  # only the checked host is ever connected to
            raise OSError(f"{host} is not the checked origin host {self.host}")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        return None


async def pinned_connector(url: str, settings: RelaySettings) -> aiohttp.TCPConnector:
    """A one-connection connector that can reach only the checked addresses of `url`'s host."""
    host = URL(url, encoded=True).host or ""
    addresses = await pinned_addresses(host, settings)
    return aiohttp.TCPConnector(limit=1, force_close=True, resolver=PinnedResolver(host, addresses))


def request_headers() -> dict[str, str]:
    """User-Agent, and the relay-loop marker when this pull is part of a relay chain."""
    headers = {"User-Agent": USER_AGENT}
    via = current_relay_via()
    if via:  # a relay's pull: the origin sees the chain (relay/loops.py)
        headers[RELAY_VIA_HEADER] = via
    return headers


async def _read_body(response: aiohttp.ClientResponse, sink: FrameSink) -> None:
    decoder = FlvDecoder(max_tag_bytes=MAX_TAG_BYTES)
    on_frame = sink.on_frame
    async for chunk in response.content.iter_any():
        for event in decoder.feed(chunk):
            if isinstance(event, Frame):
                on_frame(event)
    if decoder.header is None:
        raise SourceError("protocol", "the response ended before an FLV header")
    if decoder.buffered:
        raise SourceError("eof", f"the response ended inside a tag ({decoder.buffered} bytes left over)")
