"""Fixed relays (V4), keyed by (vhost, App, Stream); addressed by any Domain of the vhost or by Vhost."""

from __future__ import annotations

import math
from typing import Any

from ...schemas.relay_sources import (
    LIST_RELAY_SOURCE_V4,
    RELAY_SOURCE_V4,
    RELAY_SOURCE_V4_KEY,
    CreateRelaySourceV4Result,
    ListRelaySourceV4Request,
    ListRelaySourceV4Result,
    RelaySourceV4,
    RelaySourceV4Key,
)
from ...store import AlreadyExists, NotFound, RelayV4Config
from ..binding import bind
from ..context import ActionContext, Result
from ..errors import invalid_param, request_forbidden
from .vhosts import is_default_vhost


def _target(ctx: ActionContext, req: RelaySourceV4Key | ListRelaySourceV4Request) -> tuple[str, str]:
    """(vhost, domain to echo) from `Domain` (any domain of the vhost) or `Vhost`."""
    domain = req.get("Domain")
    vhost = req.get("Vhost")
    if domain:
        record = ctx.store.domain_table.get(domain)
        if record is None:
            raise request_forbidden(f"Domain {domain[:120]!r} does not exist")
        if vhost and vhost != record.vhost:
            raise invalid_param(f"Domain {domain[:120]!r} belongs to Vhost {record.vhost!r}, not {vhost!r}")
        return record.vhost, domain
    if vhost:
        if not (is_default_vhost(ctx, vhost) or ctx.store.domain_table.has_vhost(vhost)):
            raise request_forbidden(f"Vhost {vhost!r} does not exist")
        return vhost, vhost
    raise invalid_param("Domain is required")


def relay_view(config: RelayV4Config) -> RelaySourceV4:
    view: RelaySourceV4 = {
        "Domain": config.domain,
        "App": config.app,
        "Stream": config.stream,
        "SrcAddrS": list(config.src_addrs),
        "Vhost": config.vhost,  # JNEW field; harmless to older clients
        "TaskId": config.task_id,  # extension
    }
    if config.start_time is not None and config.end_time is not None:
        view["StartTime"] = config.start_time
        view["EndTime"] = config.end_time
    return view


async def create_relay_source_v4(ctx: ActionContext, body: dict[str, Any]) -> CreateRelaySourceV4Result:
    req = bind(RELAY_SOURCE_V4, body)
    app, stream = req["App"], req["Stream"]
    vhost, domain = _target(ctx, req)
    # A window that is already over is accepted and stored: the relay simply never runs.
    try:
        config = await ctx.store.create_relay_v4(
            vhost,
            app,
            stream,
            domain=domain,
            src_addrs=req["SrcAddrS"],
            start_time=req.get("StartTime"),
            end_time=req.get("EndTime"),
        )
    except AlreadyExists:
        raise invalid_param(f"a fixed relay for {app}/{stream} already exists in Vhost {vhost!r}") from None
    return {"TaskId": config.task_id}


async def update_relay_source_v4(ctx: ActionContext, body: dict[str, Any]) -> Result:
    req = bind(RELAY_SOURCE_V4, body)
    app, stream = req["App"], req["Stream"]
    vhost, _ = _target(ctx, req)
    try:
        await ctx.store.update_relay_v4(
            vhost,
            app,
            stream,
            src_addrs=req["SrcAddrS"],
            start_time=req.get("StartTime"),
            end_time=req.get("EndTime"),
        )
    except NotFound:
        raise invalid_param(f"no fixed relay for {app}/{stream} in Vhost {vhost!r}") from None
    return None


async def delete_relay_source_v4(ctx: ActionContext, body: dict[str, Any]) -> Result:
    req = bind(RELAY_SOURCE_V4_KEY, body)
    vhost, _ = _target(ctx, req)
    await ctx.store.delete_relay_v4(vhost, req["App"], req["Stream"])  # absent: success (idempotent)
    return None


async def list_relay_source_v4(ctx: ActionContext, body: dict[str, Any]) -> ListRelaySourceV4Result:
    req = bind(LIST_RELAY_SOURCE_V4, body)
    page, size = req.get("Page", 1), req.get("Size", 20)
    vhost, _ = _target(ctx, req)
    items, total = await ctx.store.list_relay_v4(vhost, offset=(page - 1) * size, limit=size)
    return {
        "List": [relay_view(c) for c in items],
        "Pagination": {
            "PageCur": page,
            "PageSize": size,
            "PageTotal": math.ceil(total / size),
            "TotalCount": total,
        },
    }
