"""Play-triggered relay configs (V3), keyed by (Vhost, App); App "" = vhost-wide."""

from __future__ import annotations

import re
from typing import Any

from ...store import RelayGroup, RelayServer, RelayV3Config
from ..context import ActionContext, Result
from ..errors import invalid_param, request_forbidden
from ..validation import (
    APP_RE,
    MAX_ADDRESSES,
    V3_PROTOCOLS,
    VHOST_RE,
    as_object,
    check_host_port,
    get_list,
    get_str,
    get_str_map,
)

APP_RULE = "letters, digits, '_', '-', '.'; 1-30 characters"
GROUP_RE = re.compile(r"[^\x00-\x1f\x7f]{1,100}")


def _vhost_and_app(ctx: ActionContext, body: dict[str, Any]) -> tuple[str, str]:
    vhost = get_str(body, "Vhost", required=True, pattern=VHOST_RE, rule="1-60 of letters, digits, _ - .")
    app = get_str(body, "App", pattern=APP_RE, rule=APP_RULE) or ""
    assert vhost is not None
    return vhost, app


def _require_vhost(ctx: ActionContext, vhost: str) -> None:
    if not ctx.store.domain_table.has_vhost(vhost):
        raise request_forbidden(f"Vhost {vhost!r} does not exist (register its domains first)")


def _parse_groups(body: dict[str, Any]) -> list[RelayGroup]:
    raw_groups = get_list(body, "GroupDetails", required=True)
    assert raw_groups is not None
    if not raw_groups:
        raise invalid_param("GroupDetails is required (use DeleteRelaySourceV3 to remove a config)")
    groups: list[RelayGroup] = []
    total = 0
    for gi, raw_group in enumerate(raw_groups):
        group = as_object(raw_group, f"GroupDetails[{gi}]")
        name = get_str(group, "Group", required=True, pattern=GROUP_RE, rule="1-100 printable characters")
        assert name is not None
        if any(g.name == name for g in groups):
            raise invalid_param(f"Group {name!r} appears twice")
        raw_servers = get_list(group, "Servers", required=True)
        assert raw_servers is not None
        if not raw_servers:
            raise invalid_param(f"GroupDetails[{gi}].Servers is required")
        total += len(raw_servers)
        if len(raw_servers) > MAX_ADDRESSES or total > MAX_ADDRESSES:
            raise invalid_param(f"at most {MAX_ADDRESSES} origin servers per config")
        servers = []
        for si, raw_server in enumerate(raw_servers):
            where = f"GroupDetails[{gi}].Servers[{si}]"
            server = as_object(raw_server, where)
            protocol = get_str(server, "RelaySourceProtocol", required=True)
            assert protocol is not None
            if protocol.lower() not in V3_PROTOCOLS:
                raise invalid_param(f"{where}.RelaySourceProtocol must be one of {', '.join(V3_PROTOCOLS)}")
            address = get_str(server, "RelaySourceDomain", required=True)
            assert address is not None
            check_host_port(address, f"{where}.RelaySourceDomain")
            params = get_str_map(server, "RelaySourceParams")
            servers.append(RelayServer(protocol.lower(), address, params))
        groups.append(RelayGroup(name, tuple(servers)))
    return groups


def config_view(config: RelayV3Config, group_filter: str | None = None) -> dict[str, Any] | None:
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
    vhost, app = _vhost_and_app(ctx, body)
    groups = _parse_groups(body)
    _require_vhost(ctx, vhost)
    await ctx.store.put_relay_v3(vhost, app, groups)
    return None


async def describe_relay_source_v3(ctx: ActionContext, body: dict[str, Any]) -> Result:
    vhost, app = _vhost_and_app(ctx, body)
    group = get_str(body, "Group")
    _require_vhost(ctx, vhost)
    if app:
        one = await ctx.store.get_relay_v3(vhost, app)
        configs = [one] if one is not None else []
    else:
        configs = await ctx.store.list_relay_v3(vhost)
    views = [v for v in (config_view(c, group) for c in configs) if v is not None]
    return {"RelaySourceConfigList": views}


async def delete_relay_source_v3(ctx: ActionContext, body: dict[str, Any]) -> Result:
    vhost, app = _vhost_and_app(ctx, body)
    group = get_str(body, "Group")
    _require_vhost(ctx, vhost)
    await ctx.store.delete_relay_v3(vhost, app, group or None)  # absent config: success (idempotent)
    return None
