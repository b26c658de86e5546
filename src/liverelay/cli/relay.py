"""`liverelay relay v3|v4`: play-triggered and fixed relay configs through the API."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import click

from ..netaddr import V3_PROTOCOL_SCHEMES
from .app import cli
from .client import ApiContext, api_command
from .output import exit_on_api_error, fail, iso_time, out, print_json, table
from .settings import load_or_exit

F = TypeVar("F", bound=Callable[..., Any])


@cli.group()
def relay() -> None:
    """Relay (origin pull) configs: v3 play-triggered, v4 fixed, and live status."""


@relay.group("v3")
def relay_v3() -> None:
    """Play-triggered relays: a viewer asking for a missing stream starts a pull."""


def default_vhost() -> str:
    """The vhost a viewer without a registered domain lands in (settings media.default_vhost)."""
    vhost = load_or_exit(None, {}).media.default_vhost
    if not vhost:
        fail("no --vhost given and media.default_vhost is empty (strict mode): give --vhost", 2)
    return vhost


def parse_params(pairs: Iterable[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--param wants key=value, got {pair!r}", 2)
        params[key] = value
    return params


def parse_v3_server(spec: str, params: Mapping[str, str]) -> dict[str, Any]:
    """`rtmp://host[:port]` or `flv://host[:port]` (http:// means flv), `?k=v` adds params."""
    parts = urlsplit(spec if "://" in spec else f"rtmp://{spec}")
    # flv:// is the CLI's short name for an HTTP-FLV origin; http:// says the same.
    scheme = parts.scheme.lower()
    protocol = "flv" if scheme == "flv" else {s: p for p, s in V3_PROTOCOL_SCHEMES.items()}.get(scheme)
    if protocol is None:
        fail(f"--server {spec!r}: protocol must be rtmp:// or flv:// (http:// = flv)", 2)
    if not parts.netloc or parts.path not in ("", "/"):
        fail(f"--server {spec!r}: give only the origin host[:port] (the app/stream come from the viewer)", 2)
    server_params = dict(params)
    server_params.update(dict(parse_qsl(parts.query, keep_blank_values=True)))
    return {
        "RelaySourceProtocol": protocol,
        "RelaySourceDomain": parts.netloc,
        "RelaySourceParams": server_params,
    }


@relay_v3.command("set")
@click.option(
    "--vhost",
    default=None,
    help="Vhost of the config (default: the node's default vhost, media.default_vhost, "
    "where viewers who come by IP address land).",
)
@click.option("--app", default="", help="App name; empty = the vhost-wide config.")
@click.option("--group", required=True, help="Origin group name (e.g. relay1).")
@click.option(
    "--server",
    "servers",
    multiple=True,
    required=True,
    metavar="URL",
    help="Origin in priority order: rtmp://host[:port] or flv://host[:port]; ?key=value adds params.",
)
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Relay param for every server.")
@click.option("--replace", is_flag=True, help="Drop the config's other groups instead of keeping them.")
@api_command
def relay_v3_set(
    api: ApiContext,
    vhost: str | None,
    app: str,
    group: str,
    servers: tuple[str, ...],
    params: tuple[str, ...],
    replace: bool,
) -> None:
    """Add or replace one origin group of a play-triggered config (UpdateRelaySourceV3).

    The other groups of (vhost, app) are kept, in their order, unless --replace. Without
    --vhost the config goes to the default vhost (settings media.default_vhost, e.g. env
    LIVERELAY_MEDIA_DEFAULT_VHOST), so a node reached by IP address can relay too.
    """
    if vhost is None:
        vhost = default_vhost()
    common = parse_params(params)
    new_servers = [parse_v3_server(s, common) for s in servers]
    new_group: dict[str, Any] = {"Group": group, "Servers": new_servers}
    groups: list[dict[str, Any]] = []
    if not replace:
        current = api.call("describe_relay_source_v3", {"Vhost": vhost, "App": app})
        for config in (current.get("Result") or {}).get("RelaySourceConfigList") or []:
            if (config.get("App") or "") == app:
                groups = [dict(g) for g in config.get("GroupDetails") or []]
    for i, existing in enumerate(groups):
        if existing.get("Group") == group:
            groups[i] = new_group
            break
    else:
        groups.append(new_group)
    body: dict[str, Any] = {"Vhost": vhost, "GroupDetails": groups}
    if app:
        body["App"] = app
    response = api.call("update_relay_source_v3", body)
    where = f"{vhost}/{app}" if app else f"{vhost} (all apps)"
    origins = ", ".join(str(s["RelaySourceDomain"]) for s in new_servers)
    api.report(response, f"set group {group} of {where}: {origins}")


def v3_rows(response: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    rows = []
    for config in (response.get("Result") or {}).get("RelaySourceConfigList") or []:
        for group in config.get("GroupDetails") or []:
            for index, server in enumerate(group.get("Servers") or []):
                params = server.get("RelaySourceParams") or {}
                rows.append(
                    (
                        config.get("Vhost"),
                        config.get("App") or "(all)",
                        group.get("Group"),
                        index,
                        server.get("RelaySourceProtocol"),
                        server.get("RelaySourceDomain"),
                        "&".join(f"{k}={v}" for k, v in params.items()),
                    )
                )
    return rows


@relay_v3.command("show")
@click.option("--vhost", required=True)
@click.option("--app", default=None, help="Only this app (default: every config of the vhost).")
@click.option("--group", default=None, help="Only this group.")
@api_command
def relay_v3_show(api: ApiContext, vhost: str, app: str | None, group: str | None) -> None:
    """Show play-triggered configs (DescribeRelaySourceV3)."""
    body: dict[str, Any] = {"Vhost": vhost}
    if app is not None:
        body["App"] = app
    if group:
        body["Group"] = group
    response = api.call("describe_relay_source_v3", body)
    if api.as_json:
        print_json(response)
        return
    out.print(table(None, ["Vhost", "App", "Group", "#", "Protocol", "Origin", "Params"], v3_rows(response)))


@relay_v3.command("rm")
@click.option("--vhost", required=True)
@click.option("--app", default="", help="App name; empty = the vhost-wide config.")
@click.option("--group", default=None, help="Remove only this group.")
@api_command
def relay_v3_rm(api: ApiContext, vhost: str, app: str, group: str | None) -> None:
    """Delete a play-triggered config or one of its groups (DeleteRelaySourceV3)."""
    body: dict[str, Any] = {"Vhost": vhost}
    if app:
        body["App"] = app
    if group:
        body["Group"] = group
    response = api.call("delete_relay_source_v3", body)
    api.report(response, f"deleted {'group ' + group + ' of ' if group else ''}{vhost}/{app or '(all apps)'}")


@relay.group("v4")
def relay_v4() -> None:
    """Fixed relays: pull a stream between --start and --end, or forever."""


def parse_time(value: str | None, option: str) -> int | None:
    """Unix seconds or ISO 8601 (no offset = UTC) -> unix seconds."""
    if value is None or value == "":
        return None
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r}: use unix seconds or ISO 8601 like 2024-05-08T12:00:00Z", 2)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def v4_body(
    domain_name: str, app: str, stream: str, srcs: tuple[str, ...], start: str | None, end: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"Domain": domain_name, "App": app, "Stream": stream, "SrcAddrS": list(srcs)}
    start_s, end_s = parse_time(start, "--start"), parse_time(end, "--end")
    if (start_s is None) != (end_s is None):
        fail("give both --start and --end, or neither (a permanent relay)", 2)
    if start_s is not None:
        body["StartTime"], body["EndTime"] = start_s, end_s
    return body


def v4_stream_options(func: F) -> F:
    """--domain/--app/--stream: which fixed relay a command is about."""
    options = [
        click.option("--domain", "domain_name", required=True, help="Pull domain of the stream."),
        click.option("--app", required=True),
        click.option("--stream", required=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def v4_config_command(func: Callable[[ApiContext, dict[str, Any], str], None]) -> Callable[..., None]:
    """A command taking a whole fixed-relay config, passed on as (api, request body, "domain/app/stream")."""

    @v4_stream_options
    @click.option(
        "--src",
        "srcs",
        multiple=True,
        required=True,
        metavar="URL",
        help="Origin URL in priority order (rtmp, rtmps, http(s) FLV/HLS, srt).",
    )
    @click.option("--start", default=None, metavar="T", help="Unix seconds or ISO 8601.")
    @click.option("--end", default=None, metavar="T", help="Unix seconds or ISO 8601.")
    @api_command
    @functools.wraps(func)
    def wrapper(
        api: ApiContext,
        domain_name: str,
        app: str,
        stream: str,
        srcs: tuple[str, ...],
        start: str | None,
        end: str | None,
    ) -> None:
        func(api, v4_body(domain_name, app, stream, srcs, start, end), f"{domain_name}/{app}/{stream}")

    return wrapper


@relay_v4.command("create")
@v4_config_command
def relay_v4_create(api: ApiContext, body: dict[str, Any], name: str) -> None:
    """Create a fixed relay (CreateRelaySourceV4)."""
    response = api.call("create_relay_source_v4", body)
    task = (response.get("Result") or {}).get("TaskId", "")
    api.report(response, f"created {name}" + (f" (TaskId {task})" if task else ""))


@relay_v4.command("update")
@v4_config_command
def relay_v4_update(api: ApiContext, body: dict[str, Any], name: str) -> None:
    """Replace a fixed relay's origins and schedule (UpdateRelaySourceV4)."""
    api.report(api.call("update_relay_source_v4", body), f"updated {name}")


@relay_v4.command("rm")
@v4_stream_options
@api_command
def relay_v4_rm(api: ApiContext, domain_name: str, app: str, stream: str) -> None:
    """Delete a fixed relay (DeleteRelaySourceV4)."""
    response = api.call("delete_relay_source_v4", {"Domain": domain_name, "App": app, "Stream": stream})
    api.report(response, f"deleted {domain_name}/{app}/{stream}")


def v4_rows(items: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            item.get("Domain"),
            item.get("App"),
            item.get("Stream"),
            "\n".join(item.get("SrcAddrS") or []),
            iso_time(item["StartTime"]) if item.get("StartTime") else "permanent",
            iso_time(item["EndTime"]) if item.get("EndTime") else "",
        )
        for item in items
    ]


@relay_v4.command("list")
@click.option("--domain", "domain_name", required=True)
@click.option("--page", default=1, show_default=True, type=click.IntRange(1))
@click.option("--size", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--all", "all_pages", is_flag=True, help="Walk every page.")
@api_command
def relay_v4_list(api: ApiContext, domain_name: str, page: int, size: int, all_pages: bool) -> None:
    """List fixed relays of a domain (ListRelaySourceV4)."""
    if all_pages:
        with exit_on_api_error():
            items = list(api.service.iter_relay_sources_v4(domain_name, page_size=max(size, 100)))
        if api.as_json:
            print_json(items)
            return
        title = f"fixed relays of {domain_name} ({len(items)})"
    else:
        response = api.call("list_relay_source_v4", {"Domain": domain_name, "Page": page, "Size": size})
        if api.as_json:
            print_json(response)
            return
        result = response.get("Result") or {}
        items = result.get("List") or []
        pagination = result.get("Pagination") or {}
        title = (
            f"fixed relays of {domain_name}: page {pagination.get('PageCur', page)}"
            f"/{pagination.get('PageTotal', '?')}, {pagination.get('TotalCount', len(items))} in all"
        )
    out.print(table(title, ["Domain", "App", "Stream", "Sources", "Start", "End"], v4_rows(items)))
