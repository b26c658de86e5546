"""Source policy: which origin addresses a relay may pull from (allow/deny CIDR lists).

Origin URLs come from API callers, so without a policy a relay is an SSRF tool that
can reach link-local and cloud metadata addresses. Rules (settings.relay):
- every address the origin host resolves to is checked (an attacker-controlled name
  may resolve to several);
- deny wins over allow; an empty allow list allows everything not denied;
- the defaults deny link-local and the common metadata endpoints.
Shared by V3 and V4: RelayPull calls `check_source_url` before each attempt.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from ..config import RelaySettings
from ..sources.base import SourceError, redact_url

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_cidrs(cidrs: Iterable[str]) -> list[IPNetwork]:
    """CIDR strings -> networks; a bare address is a /32 or /128. ValueError names a bad entry."""
    nets: list[IPNetwork] = []
    for text in cidrs:
        try:
            nets.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"bad CIDR {text!r} in the relay source policy: {exc}") from None
    return nets


def _normalise(addr: IPAddress) -> IPAddress:
    # ::ffff:169.254.169.254 must not slip past an IPv4 deny rule.
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def address_allowed(address: str | IPAddress, allow: list[IPNetwork], deny: list[IPNetwork]) -> bool:
    """The pure decision for one address: deny wins, then allow (empty allow = all)."""
    addr = _normalise(ipaddress.ip_address(address) if isinstance(address, str) else address)
    if any(addr.version == net.version and addr in net for net in deny):
        return False
    if not allow:
        return True
    return any(addr.version == net.version and addr in net for net in allow)


class SourcePolicy:
    def __init__(self, settings: RelaySettings) -> None:
        self.allow = parse_cidrs(settings.allow_cidrs)
        self.deny = parse_cidrs(settings.deny_cidrs)

    def allowed(self, address: str | IPAddress) -> bool:
        return address_allowed(address, self.allow, self.deny)

    async def check_url(self, url: str, *, timeout_s: float) -> None:
        """Resolve the URL's host; SourceError('policy') if any address is denied."""
        parts = urlsplit(url)
        host = parts.hostname
        if not host:
            raise SourceError("unsupported", f"source URL {redact_url(url)!r} has no host")
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [str(literal)]
        else:
            loop = asyncio.get_running_loop()
            try:
                # asyncio.timeout, not wait_for: a cancel of the attempt must never be lost.
                async with asyncio.timeout(timeout_s):
                    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except (TimeoutError, OSError) as exc:
                raise SourceError("connect", f"cannot resolve {host}: {exc or 'timeout'}") from None
            addresses = sorted({str(info[4][0]).split("%", 1)[0] for info in infos})
        for address in addresses:
            if not self.allowed(address):
                raise SourceError("policy", f"origin {host} ({address}) is denied by the relay source policy")
