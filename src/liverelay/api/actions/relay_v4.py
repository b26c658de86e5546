"""Fixed relays (V4), keyed by (vhost, App, Stream); addressed by any Domain of the vhost or by Vhost."""

from __future__ import annotations

import math
from typing import Any

from ...store import AlreadyExists, NotFound, RelayV4Config
from ..context import ActionContext, Result
from ..errors import invalid_param, request_forbidden
from ..validation import (
    APP_RE,
    MAX_ADDRESSES,
    STREAM_RE,
    VHOST_RE,
    check_origin_url,
    check_schedule,
    get_int,
    get_str,
    get_str_list,
    get_unix_time,
)

APP_RULE = "letters, digits, '_', '-', '.'; 1-30 characters"
STREAM_RULE = "letters, digits, '_', '-', '.'; 1-100 characters"


def _target(ctx: ActionContext, body: dict[str, Any]) -> tuple[str, str]:
    """(vhost, domain to echo) from `Domain` (any domain of the vhost) or `Vhost`."""
    domain = get_str(body, "Domain")
    vhost = get_str(body, "Vhost", pattern=VHOST_RE, rule="1-60 of letters, digits, _ - .")
    if domain:
        record = ctx.store.domain_table.get(domain)
        if record is None:
            raise request_forbidden(f"Domain {domain[:120]!r} does not exist")
        if vhost and vhost != record.vhost:
            raise invalid_param(f"Domain {domain!r} belongs to Vhost {record.vhost!r}, not {vhost!r}")
        return record.vhost, domain
    if vhost:
        if not ctx.store.domain_table.has_vhost(vhost):
            raise request_forbidden(f"Vhost {vhost!r} does not exist")
        return vhost, vhost
    raise invalid_param("Domain is required")


def _app_stream(body: dict[str, Any]) -> tuple[str, str]:
    app = get_str(body, "App", required=True, pattern=APP_RE, rule=APP_RULE)
    stream = get_str(body, "Stream", required=True, pattern=STREAM_RE, rule=STREAM_RULE)
    assert app is not None and stream is not None
    return app, stream


def _sources_and_schedule(body: dict[str, Any]) -> tuple[list[str], int | None, int | None]:
    addrs = get_str_list(body, "SrcAddrS", required=True)
    assert addrs is not None
    if not addrs:
        raise invalid_param("SrcAddrS is required")
    if len(addrs) > MAX_ADDRESSES:
        raise invalid_param(f"SrcAddrS holds at most {MAX_ADDRESSES} addresses")
    for i, url in enumerate(addrs):
        check_origin_url(url, f"SrcAddrS[{i}]")
    start = get_unix_time(body, "StartTime")
    end = get_unix_time(body, "EndTime")
    # A window that is already over is accepted and stored: the relay simply never runs.
    check_schedule(start, end)
    return addrs, start, end


def relay_view(config: RelayV4Config) -> dict[str, Any]:
    view: dict[str, Any] = {
        "Domain": config.domain,
        "App": config.app,
        "Stream": config.stream,
        "SrcAddrS": list(config.src_addrs),
    }
    if config.start_time is not None and config.end_time is not None:
        view["StartTime"] = config.start_time
        view["EndTime"] = config.end_time
    view["Vhost"] = config.vhost  # JNEW field; harmless to older clients
    view["TaskId"] = config.task_id  # extension
    return view


async def create_relay_source_v4(ctx: ActionContext, body: dict[str, Any]) -> Result:
    app, stream = _app_stream(body)
    addrs, start, end = _sources_and_schedule(body)
    vhost, domain = _target(ctx, body)
    try:
        config = await ctx.store.create_relay_v4(
            vhost, app, stream, domain=domain, src_addrs=addrs, start_time=start, end_time=end
        )
    except AlreadyExists:
        raise invalid_param(f"a fixed relay for {app}/{stream} already exists in Vhost {vhost!r}") from None
    return {"TaskId": config.task_id}


async def update_relay_source_v4(ctx: ActionContext, body: dict[str, Any]) -> Result:
    app, stream = _app_stream(body)
    addrs, start, end = _sources_and_schedule(body)
    vhost, _ = _target(ctx, body)
    try:
        await ctx.store.update_relay_v4(vhost, app, stream, src_addrs=addrs, start_time=start, end_time=end)
    except NotFound:
        raise invalid_param(f"no fixed relay for {app}/{stream} in Vhost {vhost!r}") from None
    return None


async def delete_relay_source_v4(ctx: ActionContext, body: dict[str, Any]) -> Result:
    app, stream = _app_stream(body)
    vhost, _ = _target(ctx, body)
    await ctx.store.delete_relay_v4(vhost, app, stream)  # absent: success (idempotent)
    return None


async def list_relay_source_v4(ctx: ActionContext, body: dict[str, Any]) -> Result:
    page = get_int(body, "Page", default=1, low=1, high=None)
    size = get_int(body, "Size", default=20, low=1, high=500)
    vhost, _ = _target(ctx, body)
    # Page beyond any plausible list: answer empty without asking SQLite for a huge OFFSET.
    offset = (page - 1) * size if page <= 10**9 else 2**62
    items, total = await ctx.store.list_relay_v4(vhost, offset=offset, limit=size)
    return {
        "List": [relay_view(c) for c in items],
        "Pagination": {
            "PageCur": page,
            "PageSize": size,
            "PageTotal": math.ceil(total / size),
            "TotalCount": total,
        },
    }
