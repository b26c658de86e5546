"""Source policy: which origin addresses a relay may pull from (allow/deny CIDR lists).

Origin URLs come from API callers, so without a policy a relay is an SSRF tool that
can reach link-local and cloud metadata addresses. Rules (settings.relay):
- every address the origin host resolves to is checked (an attacker-controlled name
  may resolve to several);
- deny wins over allow; an empty allow list allows everything not denied;
- the defaults deny link-local and the common metadata endpoints; "this host"
  (0.0.0.0/8, which reaches the local host on Linux, and ::) is always denied;
- an IPv6 address that carries an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, IPv4-translated
  ::ffff:0:a.b.c.d, IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16 and
  Teredo 2001::/32, server and client) is denied when that IPv4 address is denied;
- resolve once, connect to what was checked: `check_url` returns the `CheckedOrigin`
  (host and the checked addresses) and leaves it for the puller of the same task
  (`pinned_addresses`), which connects to those addresses and never resolves the name
  again (no DNS-rebinding window between check and connect).
Shared by V3 and V4: RelayPull calls `check_url` before each attempt (relay.policy
re-exports this module's names); a puller run without it checks for itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..config import RelaySettings
from .base import SourceError, redact_url

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Never a valid origin whatever the settings: "this host" addresses.
ALWAYS_DENIED: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("0.0.0.0/8"),
    ipaddress.ip_network("::/128"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT, RFC 2765
_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible (RFC 4291)


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


def embedded_ipv4(addr: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (and may reach through a translator)."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return []
    low32 = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    found: list[ipaddress.IPv4Address] = []
    if addr.ipv4_mapped is not None:
        found.append(addr.ipv4_mapped)
    if addr in _TRANSLATED or addr in _NAT64:
        found.append(low32)
    if addr in _COMPATIBLE and int(addr) > 1:  # :: and ::1 are not IPv4-compatible forms
        found.append(low32)
    if addr.sixtofour is not None:
        found.append(addr.sixtofour)
    if addr.teredo is not None:
        found.extend(addr.teredo)  # (server, client)
    return found


def _denied(addr: IPAddress, deny: Iterable[IPNetwork]) -> bool:
    return any(addr.version == net.version and addr in net for net in deny)


def address_allowed(address: str | IPAddress, allow: list[IPNetwork], deny: list[IPNetwork]) -> bool:
    """The pure decision for one address: deny wins, then allow (empty allow = all)."""
    raw = ipaddress.ip_address(address) if isinstance(address, str) else address
    addr = _normalise(raw)
    denied = (*ALWAYS_DENIED, *deny)
    if _denied(addr, denied) or _denied(raw, denied):
        return False
    if any(_denied(inner, denied) for inner in embedded_ipv4(raw)):
        return False
    if not allow:
        return True
    return any(addr.version == net.version and addr in net for net in allow)


@dataclass(frozen=True)
class CheckedOrigin:
    """An origin host and the addresses the policy checked for it (connect to these only)."""

    host: str
    addresses: tuple[str, ...]


# The origin the last check_url of this task approved: RelayPull awaits check_url and then
# the puller in one task, so the puller finds it here without a second lookup.
_checked: ContextVar[CheckedOrigin | None] = ContextVar("liverelay_checked_origin", default=None)


def use_checked(origin: CheckedOrigin) -> None:
    """Pullers started later in this task (or in tasks it creates) connect to `origin`'s addresses."""
    _checked.set(origin)


class SourcePolicy:
    def __init__(self, settings: RelaySettings) -> None:
        self.allow = parse_cidrs(settings.allow_cidrs)
        self.deny = parse_cidrs(settings.deny_cidrs)

    def allowed(self, address: str | IPAddress) -> bool:
        return address_allowed(address, self.allow, self.deny)

    async def check_url(self, url: str, *, timeout_s: float) -> CheckedOrigin:
        """Resolve the URL's host; SourceError('policy') if any address is denied.

        Returns the checked origin and leaves it for this task's puller (`pinned_addresses`).
        """
        host = urlsplit(url).hostname
        if not host:
            raise SourceError("unsupported", f"source URL {redact_url(url)!r} has no host")
        origin = await self.check_host(host, timeout_s=timeout_s)
        use_checked(origin)
        return origin

    async def check_host(self, host: str, *, timeout_s: float) -> CheckedOrigin:
        """Resolve `host` once and check every address it has."""
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
            # getaddrinfo's order (RFC 6724 preference) is kept: the puller tries them in it.
            addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
        for address in addresses:
            if not self.allowed(address):
                raise SourceError("policy", f"origin {host} ({address}) is denied by the relay source policy")
        if not addresses:
            raise SourceError("connect", f"cannot resolve {host}: no address")
        return CheckedOrigin(host.lower(), tuple(addresses))


async def pinned_addresses(host: str, settings: RelaySettings) -> tuple[str, ...]:
    """The checked addresses a puller connects to for `host`.

    Those of this task's check_url when it checked the same host (the normal case: one
    lookup per attempt); otherwise the puller runs on its own and checks here.
    """
    checked = _checked.get()
    if checked is not None and checked.host == host.lower():
        return checked.addresses
    origin = await SourcePolicy(settings).check_host(host, timeout_s=settings.connect_timeout_s)
    return origin.addresses
