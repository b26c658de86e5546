"""Which vhost a viewer or publisher belongs to: one rule for every listener."""

from __future__ import annotations

from .protocols import ListenerDeps


def resolve_vhost(deps: ListenerDeps, host: str | None) -> str | None:
    """The vhost of `host` (HTTP Host, RTMP tcUrl host) through the domain table, else the
    default vhost; None means refuse (strict mode: `media.default_vhost` is empty).

    The domain table normalises the host itself (port, case, trailing dot)."""
    domains = deps.domains
    if domains is not None and host:
        vhost = domains.vhost_for(host)
        if vhost:
            return vhost
    return deps.settings.media.default_vhost or None
