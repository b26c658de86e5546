"""The node's URL-auth verifier: which configs apply, and whether one URL may publish or play.

The listeners call `check_publish` / `check_play` at their admission points and refuse
with the Refusal's reason in their log line. The reason names what failed (no
signature, a malformed or past expiry, a wrong signature), never which key or which
part of a secret: a mismatch against the primary and the backup key reads the same.

Configs come from the store at start and then from its ChangeBus (UpdateAuthKey on this
node, or on another node through the PostgreSQL change feed), so a key change applies
to the next publish or play without a restart. A connection already admitted is not
re-checked (the service's behaviour too: an expiring URL does not cut a running stream).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .sign import MAX_QUERY_CHARS, auth_params, matches, url_signature

if TYPE_CHECKING:  # the store (SQLAlchemy) loads with the node, not with this module
    from ..store import ChangeEvent, Store, UrlAuthConfig

Key = tuple[str, str, str]
MAX_TIME_DIGITS = 12  # volcTime beyond this many digits is malformed (year 33658)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a publish or play was refused (for the log; the peer gets a generic answer)."""

    reason: str


MISSING = Refusal("missing signature (volcTime and volcSecret required)")
MALFORMED = Refusal("malformed volcTime")
EXPIRED = Refusal("signature expired")
MISMATCH = Refusal("signature mismatch")


def is_loopback_bind(host: str) -> bool:
    """True when a listener bound to `host` is reachable from this machine only.

    Loopback means an IP literal in 127.0.0.0/8 or ::1 (an IPv4-mapped loopback too), or
    the name "localhost". A wildcard ("", 0.0.0.0, ::), any other address and any other
    host name (it may resolve to a public address) count as reachable from elsewhere."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def exposure_warning(rtmp_host: str, open_publish: bool) -> str | None:
    """The start-up warning of a node that refuses unsigned publishing on a public listener."""
    if open_publish or is_loopback_bind(rtmp_host):
        return None
    shown = rtmp_host or "*"
    return (
        f"RTMP listener bound to {shown} (not loopback-only): publishing is refused on every "
        "vhost/app without an enabled push key (UpdateAuthKey SceneType=push, or `liverelay auth "
        "set --scene push`); to allow unsigned publishing anyway set media.open_publish = true"
    )


def applicable(
    configs: Mapping[Key, UrlAuthConfig], vhost: str, app: str, scene: str
) -> UrlAuthConfig | None:
    """The config that applies to (vhost, app, scene): the app's own, else the vhost-wide
    one (app ""); None when that one is disabled or has no key (then nothing is checked)."""
    for key in ((vhost, app, scene), (vhost, "", scene)):
        config = configs.get(key)
        if config is not None:
            return config if config.enabled and config.keys else None
    return None


class UrlAuthVerifier:
    def __init__(
        self,
        configs: list[UrlAuthConfig] | None = None,
        *,
        open_publish: bool = True,
        rtmp_public: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._configs: dict[Key, UrlAuthConfig] = {c.key: c for c in configs or ()}
        # Unsigned publishing is refused where no push key applies, when the RTMP
        # listener is reachable from elsewhere and the operator did not allow it.
        self.guard_unsigned_publish = rtmp_public and not open_publish
        self.clock = clock

    @classmethod
    async def from_store(cls, store: Store, *, open_publish: bool, rtmp_host: str) -> UrlAuthVerifier:
        verifier = cls(
            await store.list_url_auth(),
            open_publish=open_publish,
            rtmp_public=not is_loopback_bind(rtmp_host),
        )
        store.bus.subscribe(verifier.on_change)
        return verifier

    def on_change(self, event: ChangeEvent) -> None:
        if event.entity != "url_auth":
            return
        if event.op == "deleted":
            self._configs.pop(event.key, None)
        else:
            self._configs[event.key] = event.value

    def config_for(self, vhost: str, app: str, scene: str) -> UrlAuthConfig | None:
        return applicable(self._configs, vhost, app, scene)

    def check_publish(self, vhost: str, app: str, stream: str, query: str) -> Refusal | None:
        config = self.config_for(vhost, app, "push")
        if config is None:
            if self.guard_unsigned_publish:
                return Refusal(
                    "no push key applies and the RTMP listener is not loopback-only "
                    "(media.open_publish = true allows unsigned publishing)"
                )
            return None
        return self._check(config, app, stream, query)

    def check_play(self, vhost: str, app: str, stream: str, query: str) -> Refusal | None:
        config = self.config_for(vhost, app, "pull")
        return None if config is None else self._check(config, app, stream, query)

    def _check(self, config: UrlAuthConfig, app: str, stream: str, query: str) -> Refusal | None:
        if len(query) > MAX_QUERY_CHARS:
            return MISSING
        volc_time, secret = auth_params(query)
        if volc_time is None or secret is None:
            return MISSING
        if not (volc_time.isascii() and volc_time.isdigit()) or len(volc_time) > MAX_TIME_DIGITS:
            return MALFORMED
        if int(volc_time) < self.clock():
            return EXPIRED
        # Every key is tried (no early exit on the primary), so the time taken does not
        # tell which key a guess was checked against.
        ok = False
        for entry in config.keys:
            expected = url_signature(entry.algorithm, app, stream, entry.secret_key, volc_time)
            ok |= matches(expected, secret)
        return None if ok else MISMATCH
