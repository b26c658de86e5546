"""Which vhosts relay configs may name: those with registered domains, and the default vhost."""

from __future__ import annotations

from ..context import ActionContext
from ..errors import request_forbidden


def is_default_vhost(ctx: ActionContext, vhost: str) -> bool:
    """The vhost of requests whose host is no registered domain (a node reached by IP).

    It has no domains by definition, yet viewers land in it, so V3 and V4 configs
    may name it like any vhost (nginx-rtmp and SRS relay on their default vhost too).
    An empty `media.default_vhost` (strict mode) means there is none."""
    default = ctx.settings.media.default_vhost
    return bool(default) and vhost == default


def require_vhost(ctx: ActionContext, vhost: str) -> None:
    if not (is_default_vhost(ctx, vhost) or ctx.store.domain_table.has_vhost(vhost)):
        raise request_forbidden(f"Vhost {vhost!r} does not exist (register its domains first)")
