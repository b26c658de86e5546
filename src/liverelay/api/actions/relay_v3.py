"""Play-triggered relay configs (V3), keyed by (Vhost, App); App "" = vhost-wide."""

from __future__ import annotations

from typing import Any

from ...schemas.relay_sources import (
    DELETE_RELAY_SOURCE_V3,
    DESCRIBE_RELAY_SOURCE_V3,
    UPDATE_RELAY_SOURCE_V3,
    DescribeRelaySourceV3Result,
    RelaySourceConfig,
)
from ...store import RelayGroup, RelayServer, RelayV3Config
from ..binding import bind
from ..context import ActionContext, Result
from .vhosts import require_vhost


def config_view(config: RelayV3Config, group_filter: str | None = None) -> RelaySourceConfig | None:
    groups = [g for g in config.groups if not group_filter or g.name == group_filter]
    if not groups:
        return None
    return {
        "Vhost": config.vhost,
        "App": config.app,
        "GroupDetails": [
            {
                "Group": g.name,
                "Servers": [
                    {
                        "RelaySourceProtocol": s.protocol,
                        "RelaySourceDomain": s.domain,
                        "RelaySourceParams": dict(s.params),
                    }
                    for s in g.servers
                ],
            }
            for g in groups
        ],
    }


async def update_relay_source_v3(ctx: ActionContext, body: dict[str, Any]) -> Result:
    req = bind(UPDATE_RELAY_SOURCE_V3, body)
    vhost, app = req["Vhost"], req.get("App", "")
    groups = [
        RelayGroup(
            g["Group"],
            tuple(
                RelayServer(s["RelaySourceProtocol"], s["RelaySourceDomain"], s.get("RelaySourceParams", {}))
                for s in g["Servers"]
            ),
        )
        for g in req["GroupDetails"]
    ]
    require_vhost(ctx, vhost)
    await ctx.store.put_relay_v3(vhost, app, groups)
    return None


async def describe_relay_source_v3(ctx: ActionContext, body: dict[str, Any]) -> DescribeRelaySourceV3Result:
    req = bind(DESCRIBE_RELAY_SOURCE_V3, body)
    vhost, app = req["Vhost"], req.get("App", "")
    require_vhost(ctx, vhost)
    if app:
        one = await ctx.store.get_relay_v3(vhost, app)
        configs = [one] if one is not None else []
    else:
        configs = await ctx.store.list_relay_v3(vhost)
    views = [v for v in (config_view(c, req.get("Group")) for c in configs) if v is not None]
    return {"RelaySourceConfigList": views}


async def delete_relay_source_v3(ctx: ActionContext, body: dict[str, Any]) -> Result:
    req = bind(DELETE_RELAY_SOURCE_V3, body)
    vhost = req["Vhost"]
    require_vhost(ctx, vhost)
    # An absent config is a success (idempotent).
    await ctx.store.delete_relay_v3(vhost, req.get("App", ""), req.get("Group"))
    return None
