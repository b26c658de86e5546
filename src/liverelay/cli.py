"""The `liverelay` command: run a node (`serve`), manage local keys, and drive the API.

API commands (domain, relay) go through liverelay.sdk like any remote client, so the
CLI works against any node it can reach. `keys` works on the local store directly:
keys are what you need before the API will talk to you.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar
from urllib.parse import parse_qsl, urlsplit

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import __version__
from .config import ConfigError, Settings, load_settings
from .sdk import LiveAPIError, LiveConnectionError, LiveService

DEFAULT_ENDPOINT = "127.0.0.1:8180"
F = TypeVar("F", bound=Callable[..., Any])

out = Console(highlight=False, soft_wrap=True)


# -- shared output/error helpers -------------------------------------------------------


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False))


def api_error_text(error: LiveAPIError) -> str:
    rid = f" ({error.request_id})" if error.request_id else ""
    return f"{error.code}: {error.message}{rid}"


@contextmanager
def exit_on_api_error() -> Iterator[None]:
    """Print `error: Code: Message (RequestId)` (or the connection failure) and exit."""
    try:
        yield
    except LiveAPIError as error:
        fail(api_error_text(error))
    except LiveConnectionError as error:
        fail(str(error))


# -- API client options ------------------------------------------------------------------


def client_options(func: F) -> F:
    """--endpoint/--scheme/--ak/--sk/--json/--timeout for every command that calls the API."""
    options = [
        click.option(
            "--endpoint",
            envvar="LIVERELAY_ENDPOINT",
            default=DEFAULT_ENDPOINT,
            show_default=True,
            help="API address HOST:PORT (env LIVERELAY_ENDPOINT).",
        ),
        click.option("--scheme", type=click.Choice(["http", "https"]), default="http", show_default=True),
        click.option("--ak", envvar="ACCESS_KEY_ID", help="Access key id (env ACCESS_KEY_ID)."),
        click.option("--sk", envvar="ACCESS_KEY_SECRET", help="Access key secret (env ACCESS_KEY_SECRET)."),
        click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per request."),
        click.option("--json", "as_json", is_flag=True, help="Print the raw JSON response."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


class ApiContext:
    """What a client command needs: a LiveService and how to print."""

    def __init__(
        self, endpoint: str, scheme: str, ak: str | None, sk: str | None, timeout: float, as_json: bool
    ) -> None:
        if not ak or not sk:
            fail("no credentials: set ACCESS_KEY_ID and ACCESS_KEY_SECRET or pass --ak/--sk", 2)
        self.as_json = as_json
        if "://" in endpoint:  # a pasted URL such as http://127.0.0.1:8180/
            parts = urlsplit(endpoint)
            scheme, endpoint = parts.scheme or scheme, parts.netloc
        if scheme not in ("http", "https") or not endpoint:
            fail(f"--endpoint wants HOST:PORT (or http[s]://HOST:PORT), got {endpoint!r}", 2)
        self.service = LiveService(endpoint, ak, sk, scheme, timeout=timeout)

    def call(self, method: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run one SDK call; print `error: Code: Message (RequestId)` and exit on failure."""
        with exit_on_api_error():
            return getattr(self.service, method)(dict(body or {}))

    def report(self, response: Mapping[str, Any], message: str) -> None:
        """The raw response with --json, else the one-line (or few-line) human summary."""
        if self.as_json:
            print_json(response)
        else:
            click.echo(message)


def api_command(func: Callable[..., None]) -> Callable[..., None]:
    """Turn the client options into an ApiContext passed as the first argument."""

    @client_options
    @functools.wraps(func)
    def wrapper(
        endpoint: str,
        scheme: str,
        ak: str | None,
        sk: str | None,
        timeout: float,
        as_json: bool,
        **kwargs: Any,
    ) -> None:
        api = ApiContext(endpoint, scheme, ak, sk, timeout, as_json)
        try:
            func(api, **kwargs)
        finally:
            api.service.close()

    return wrapper


# Every cell folds (a narrow terminal squeezes columns, never crops them); errors
# are kept to a bounded width so one long message does not take the whole table.
MAX_WIDTHS = {"Last error": 40}


def table(title: str | None, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        t.add_column(column, overflow="fold", max_width=MAX_WIDTHS.get(column))
    for row in rows:
        # Text, not markup: values like "[Errno 111]" must print as they are.
        t.add_row(*(Text("" if v is None else str(v)) for v in row))
    return t


# -- top level ----------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="liverelay")
def cli() -> None:
    """liverelay: a live-streaming relay node with origin pull and a Volcengine-compatible API."""


def main() -> None:
    cli(prog_name="liverelay")


# -- serve --------------------------------------------------------------------------------


def build_settings(config: str | None, overrides: dict[str, Any]) -> Settings:
    try:
        return load_settings(config, overrides=overrides)
    except ConfigError as exc:
        fail(f"bad configuration: {exc}", 2)


def setup_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        fail(f"bad configuration: unknown log level {level!r}", 2)
    logging.basicConfig(
        level=numeric,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def started_banner(node: Any, ak: str | None) -> str:
    """Where each listener is and a first call to try."""
    lines = ["liverelay node is up"]
    for listener in node.listeners:
        lines.append(f"  {listener.name:<5} {listener.url}")
    api = next((lst for lst in node.listeners if lst.name == "api"), None)
    if api is not None:
        host = f"[{api.host}]" if ":" in api.host else api.host
        endpoint = f"{host}:{api.port}"
        lines.append(f"try:  liverelay domain list --endpoint {endpoint}")
        lines.append(
            f'SDK:  LiveService("{endpoint}", os.environ["ACCESS_KEY_ID"], '
            f'os.environ["ACCESS_KEY_SECRET"], scheme="http")'
        )
        if not ak:
            lines.append(
                "note: no ACCESS_KEY_ID/ACCESS_KEY_SECRET set; create a key with `liverelay keys create`"
            )
    return "\n".join(lines)


async def ensure_env_key(settings: Settings, ak: str, sk: str) -> None:
    """Put the environment's key pair in the store before the API starts answering."""
    from .store import open_store

    store = await open_store(settings)
    try:
        await store.ensure_key(ak, sk)
    finally:
        await store.close()


async def serve_node(settings: Settings, ak: str | None, sk: str | None) -> None:
    from .node import run_node

    if ak and sk:
        await ensure_env_key(settings, ak, sk)

    def on_started(node: Any) -> None:
        click.echo(started_banner(node, ak))
        sys.stdout.flush()

    await run_node(settings, on_started=on_started)


@cli.command()
@click.option(
    "--data-dir", type=click.Path(file_okay=False), help="State directory (default .liverelay-data)."
)
@click.option("--api-listen", metavar="HOST:PORT", help="Management API (default 127.0.0.1:8180).")
@click.option("--http-listen", metavar="HOST:PORT", help="HTTP-FLV playback (default 127.0.0.1:8080).")
@click.option("--rtmp-listen", metavar="HOST:PORT", help="RTMP publish/play (default 127.0.0.1:1935).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML settings file.")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def serve(
    data_dir: str | None,
    api_listen: str | None,
    http_listen: str | None,
    rtmp_listen: str | None,
    config_file: str | None,
    log_level: str | None,
) -> None:
    """Run a node until SIGTERM/SIGINT. Settings: flags > env > TOML > defaults."""
    settings = build_settings(
        config_file,
        {
            "data_dir": data_dir,
            "api.listen": api_listen,
            "media.http_listen": http_listen,
            "media.rtmp_listen": rtmp_listen,
            "log_level": log_level.upper() if log_level else None,
        },
    )
    setup_logging(settings.log_level)
    from .node import install_event_loop

    install_event_loop()
    ak, sk = os.environ.get("ACCESS_KEY_ID"), os.environ.get("ACCESS_KEY_SECRET")
    if bool(ak) != bool(sk):
        logging.getLogger("liverelay.cli").warning(
            "only one of ACCESS_KEY_ID / ACCESS_KEY_SECRET is set: no key pair added to the store"
        )
    try:
        asyncio.run(serve_node(settings, ak, sk))
    except (ConfigError, NotImplementedError) as exc:
        fail(f"bad configuration: {exc}", 2)
    except OSError as exc:
        fail(f"cannot start the node: {exc}")
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        pass


# -- keys (local store) ----------------------------------------------------------------------


def store_options(func: F) -> F:
    func = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(func)
    func = click.option(
        "--config", "config_file", type=click.Path(dir_okay=False), help="TOML settings file."
    )(func)
    func = click.option(
        "--data-dir", type=click.Path(file_okay=False), help="State directory, as for serve."
    )(func)
    return func


def run_on_store(data_dir: str | None, config_file: str | None, work: Callable[[Any], Awaitable[Any]]) -> Any:
    settings = build_settings(config_file, {"data_dir": data_dir})

    async def runner() -> Any:
        from .store import open_store

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = await open_store(settings)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(runner())
    except NotImplementedError as exc:  # e.g. a database_url this build cannot open
        fail(f"bad configuration: {exc}", 2)
    except OSError as exc:
        fail(f"cannot open the store in {settings.data_dir}: {exc}")


def key_fields(key: Any) -> dict[str, Any]:
    """A stored key as printable fields (the secret is never listed)."""
    created = getattr(key, "created", None)
    return {
        "AccessKeyId": getattr(key, "ak", None) or getattr(key, "access_key", None),
        "Enabled": bool(getattr(key, "enabled", True)),
        "CreateTime": iso_time(created) if created else "",
    }


@cli.group()
def keys() -> None:
    """Access keys of the local node's store (operate on --data-dir directly)."""


@keys.command("create")
@store_options
def keys_create(data_dir: str | None, config_file: str | None, as_json: bool) -> None:
    """Create a key pair; the secret is shown only this once."""
    key = run_on_store(data_dir, config_file, lambda store: store.create_key())
    ak, sk = key_pair(key)
    if as_json:
        print_json({"AccessKeyId": ak, "SecretAccessKey": sk})
        return
    click.echo(f"AccessKeyId:     {ak}")
    click.echo(f"SecretAccessKey: {sk}")
    click.echo("The secret is not shown again. To use it:")
    click.echo(f"  export ACCESS_KEY_ID={ak} ACCESS_KEY_SECRET={sk}")


def key_pair(key: Any) -> tuple[str, str]:
    if isinstance(key, tuple):
        return str(key[0]), str(key[1])
    return str(key.ak), str(key.sk)


@keys.command("list")
@store_options
def keys_list(data_dir: str | None, config_file: str | None, as_json: bool) -> None:
    """List access key ids."""
    rows = [key_fields(k) for k in run_on_store(data_dir, config_file, lambda store: store.list_keys())]
    if as_json:
        print_json(rows)
        return
    out.print(table(None, ["AccessKeyId", "Enabled", "Created"], [r.values() for r in rows]))


@keys.command("delete")
@click.argument("ak")
@store_options
def keys_delete(ak: str, data_dir: str | None, config_file: str | None, as_json: bool) -> None:
    """Delete the key AK."""
    deleted = bool(run_on_store(data_dir, config_file, lambda store: store.delete_key(ak)))
    if as_json:
        print_json({"AccessKeyId": ak, "Deleted": deleted})
    if not deleted:
        fail(f"no such key: {ak}")
    if not as_json:
        click.echo(f"deleted {ak}")


# -- domain --------------------------------------------------------------------------------


@cli.group()
def domain() -> None:
    """Domains and vhosts (CreateDomainV2, ListDomainDetail, DeleteDomain)."""


@domain.command("add")
@click.option("--vhost", required=True, help="Domain space the domains belong to.")
@click.option("--push", "push_domains", multiple=True, metavar="DOMAIN", help="Push domain (repeatable).")
@click.option("--pull", "pull_domains", multiple=True, metavar="DOMAIN", help="Pull domain (repeatable).")
@click.option(
    "--region", default="cn", show_default=True, help="Region of the domains (cn, cn-oversea, cn-global)."
)
@api_command
def domain_add(
    api: ApiContext, vhost: str, push_domains: tuple[str, ...], pull_domains: tuple[str, ...], region: str
) -> None:
    """Add push/pull domains to a vhost (one CreateDomainV2 call)."""
    domains = [{"DomainName": d, "Type": "push", "Region": region} for d in push_domains]
    domains += [{"DomainName": d, "Type": "pull-flv", "Region": region} for d in pull_domains]
    if not domains:
        fail("give at least one --push or --pull domain", 2)
    response = api.call("create_domain_v2", {"Vhost": vhost, "Domains": domains})
    added = [f"added {d['Type']:<8} {d['DomainName']} -> vhost {vhost}" for d in domains]
    api.report(response, "\n".join(added))


@domain.command("list")
@click.option("--vhost", "vhosts", multiple=True, help="Only these vhosts (repeatable).")
@click.option("--page", default=1, show_default=True, type=click.IntRange(1, 1000))
@click.option("--size", default=100, show_default=True, type=click.IntRange(1, 1000))
@api_command
def domain_list(api: ApiContext, vhosts: tuple[str, ...], page: int, size: int) -> None:
    """List domains (ListDomainDetail)."""
    body: dict[str, Any] = {"PageNum": page, "PageSize": size}
    if vhosts:
        body["VhostList"] = list(vhosts)
    response = api.call("list_domain_detail", body)
    if api.as_json:
        print_json(response)
        return
    result = response.get("Result") or {}
    rows = [
        (
            d.get("Domain"),
            d.get("Type"),
            d.get("Vhost"),
            d.get("Region"),
            d.get("Status"),
            d.get("CreateTime"),
        )
        for d in result.get("DomainList") or []
    ]
    total = result.get("Total", len(rows))
    out.print(table(f"domains ({total})", ["Domain", "Type", "Vhost", "Region", "Status", "Created"], rows))


@domain.command("rm")
@click.argument("domain_name", metavar="DOMAIN")
@api_command
def domain_rm(api: ApiContext, domain_name: str) -> None:
    """Delete a domain (DeleteDomain)."""
    api.report(api.call("delete_domain", {"Domain": domain_name}), f"deleted {domain_name}")


# -- relay ----------------------------------------------------------------------------------


@cli.group()
def relay() -> None:
    """Relay (origin pull) configs: v3 play-triggered, v4 fixed, and live status."""


@relay.group("v3")
def relay_v3() -> None:
    """Play-triggered relays: a viewer asking for a missing stream starts a pull."""


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
    protocol = {"rtmp": "rtmp", "flv": "flv", "http": "flv"}.get(parts.scheme.lower())
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
@click.option("--vhost", required=True)
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
    vhost: str,
    app: str,
    group: str,
    servers: tuple[str, ...],
    params: tuple[str, ...],
    replace: bool,
) -> None:
    """Add or replace one origin group of a play-triggered config (UpdateRelaySourceV3).

    The other groups of (vhost, app) are kept, in their order, unless --replace.
    """
    common = parse_params(params)
    new_group = {"Group": group, "Servers": [parse_v3_server(s, common) for s in servers]}
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
    origins = ", ".join(s["RelaySourceDomain"] for s in new_group["Servers"])
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


# -- relay status ---------------------------------------------------------------------------

# Column -> keys a status row may carry it under (compared without case and underscores).
STATUS_COLUMNS: list[tuple[str, tuple[str, ...]]] = [
    ("Stream", ("stream", "key", "name")),
    ("Type", ("type", "kind", "mode")),
    ("State", ("state", "status")),
    ("Source", ("source", "source_url", "url", "current_source", "source_in_use")),
    ("#", ("source_index", "index", "current_index")),
    ("Attempts", ("attempts", "attempt", "retries")),
    ("Last error", ("last_error", "error")),
    ("Up for", ("up_since", "since", "started_at", "connected_at")),
    ("Bitrate", ("bitrate", "bitrate_bps", "bitrate_kbps", "kbps")),
    ("Viewers", ("viewers", "viewer_count")),
    ("Switches", ("switches", "switch_count", "failovers")),
]


def _norm(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def pick(row: Mapping[str, Any], names: Iterable[str]) -> tuple[str | None, Any]:
    by_norm = {_norm(k): k for k in row}
    for name in names:
        key = by_norm.get(_norm(name))
        if key is not None and row[key] not in (None, ""):
            return key, row[key]
    return None, None


def status_rows(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The list of row dicts in a DescribeRelayStatus response, wherever it sits."""
    result: Any = response.get("Result", response)
    if isinstance(result, list):
        return [r for r in result if isinstance(r, dict)]
    if isinstance(result, dict):
        for value in result.values():
            if isinstance(value, list) and all(isinstance(r, dict) for r in value):
                return list(value)
    return []


def format_status_cell(column: str, key: str | None, value: Any, row: Mapping[str, Any]) -> str:
    if value is None:
        return ""
    if column == "Stream":
        if isinstance(value, dict | list | tuple):
            parts = list(value.values()) if isinstance(value, dict) else list(value)
            return "/".join(str(p) for p in parts if p not in (None, ""))
        prefix = [str(row[k]) for k in ("vhost", "app", "Vhost", "App") if row.get(k)]
        return "/".join([*prefix, str(value)]) if _norm(key or "") == "stream" else str(value)
    if column == "Up for":
        return age(value)
    if column == "Bitrate" and isinstance(value, int | float):
        kbps = value if "kbps" in _norm(key or "") else value / 1000
        return f"{kbps:,.0f}k"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def status_table(rows: list[dict[str, Any]]) -> Table:
    cells = []
    for row in rows:
        cells.append([format_status_cell(col, *pick(row, names), row) for col, names in STATUS_COLUMNS])
    t = table(
        f"relays ({len(rows)}) at {datetime.now(UTC).strftime('%H:%M:%S')} UTC",
        [c for c, _ in STATUS_COLUMNS],
        cells,
    )
    return t


@relay.command("status")
@click.option("--watch", is_flag=True, help="Refresh the table until Ctrl-C.")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.1), help="Seconds.")
@click.option("--count", default=0, type=click.IntRange(0), help="With --watch: stop after N refreshes.")
@api_command
def relay_status(api: ApiContext, watch: bool, interval: float, count: int) -> None:
    """Live state of every relay (DescribeRelayStatus)."""
    if not watch:
        response = api.call("describe_relay_status")
        if api.as_json:
            print_json(response)
        else:
            out.print(status_table(status_rows(response)))
        return
    from rich.live import Live

    refreshes = 0
    try:
        with Live(status_table([]), console=out, auto_refresh=False) as live:
            while True:
                response = api.call("describe_relay_status")
                live.update(status_table(status_rows(response)), refresh=True)
                refreshes += 1
                if count and refreshes >= count:
                    break
                time.sleep(interval)
    except KeyboardInterrupt:
        pass


def age(value: Any, now: float | None = None) -> str:
    """Unix seconds or an RFC 3339 time -> how long ago, e.g. '1h02m' (as given if unparsable)."""
    try:
        if isinstance(value, int | float):
            since = float(value)
        else:
            since = datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return str(value)
    seconds = max(0, int((time.time() if now is None else now) - since))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 24:
        return f"{hours // 24}d{hours % 24:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


# `liverelay status` is short for `liverelay relay status`.
cli.add_command(relay_status, "status")


def iso_time(value: Any) -> str:
    try:
        return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return str(value)


# -- streams (Volcengine's stream actions) ---------------------------------------------------


@cli.group()
def stream() -> None:
    """Live and ended streams on the node; cut off, forbid and resume publishers."""


def stream_command(func: Callable[..., None]) -> Callable[..., None]:
    """--vhost/--domain (one of them), --app, --stream: the stream a command is about,
    passed on as (api, request body, "app/stream", other options)."""

    @click.option("--vhost", default=None, help="Vhost of the stream (or --domain).")
    @click.option("--domain", "domain_name", default=None, help="Any domain of the stream's vhost.")
    @click.option("--app", required=True)
    @click.option("--stream", "stream_name", required=True)
    @api_command
    @functools.wraps(func)
    def wrapper(
        api: ApiContext, vhost: str | None, domain_name: str | None, app: str, stream_name: str, **rest: Any
    ) -> None:
        if bool(vhost) == bool(domain_name):
            fail("give exactly one of --vhost and --domain", 2)
        body: dict[str, Any] = {"App": app, "Stream": stream_name}
        body["Vhost" if vhost else "Domain"] = vhost or domain_name
        func(api, body, f"{app}/{stream_name}", **rest)

    return wrapper


@stream.command("list")
@click.option("--vhost", default=None)
@click.option("--source", "source_type", type=click.Choice(["push", "relay"]), default=None)
@click.option("--match", default=None, help="Part of a stream name (fuzzy match).")
@click.option("--page", default=1, show_default=True, type=click.IntRange(1))
@click.option("--size", default=100, show_default=True, type=click.IntRange(1, 1000))
@api_command
def stream_list(
    api: ApiContext, vhost: str | None, source_type: str | None, match: str | None, page: int, size: int
) -> None:
    """Live streams (DescribeLiveStreamInfoByPage)."""
    body: dict[str, Any] = {"PageNum": page, "PageSize": size}
    if vhost:
        body["Vhost"] = vhost
    if source_type:
        body["SourceType"] = source_type
    if match:
        body["Stream"], body["QueryType"] = match, "fuzzy"
    response = api.call("describe_live_stream_info_by_page", body)
    if api.as_json:
        print_json(response)
        return
    result = response.get("Result") or {}
    rows = [
        (
            f"{r.get('Vhost')}/{r.get('App')}/{r.get('Stream')}",
            r.get("SourceType") + (f" ({r['RelayType']})" if r.get("RelayType") else ""),
            "+".join(c for c in (r.get("VideoCodec"), r.get("AudioCodec")) if c),
            f"{r.get('Bitrate', 0)} kbit/s",
            ", ".join(f"{k} {v}" for k, v in (r.get("ViewersByProtocol") or {}).items()) or "0",
            age(r.get("SessionStartTime")),
        )
        for r in result.get("StreamInfoList") or []
    ]
    title = f"live streams ({result.get('RoughCount', len(rows))})"
    out.print(table(title, ["Stream", "Source", "Codecs", "Bitrate", "Viewers", "Up for"], rows))


@stream.command("closed")
@click.option("--vhost", default=None)
@click.option("--page", default=1, show_default=True, type=click.IntRange(1))
@click.option("--size", default=100, show_default=True, type=click.IntRange(1, 1000))
@api_command
def stream_closed(api: ApiContext, vhost: str | None, page: int, size: int) -> None:
    """Ended streams, newest first (DescribeClosedStreamInfoByPage)."""
    body: dict[str, Any] = {"PageNum": page, "PageSize": size}
    if vhost:
        body["Vhost"] = vhost
    response = api.call("describe_closed_stream_info_by_page", body)
    if api.as_json:
        print_json(response)
        return
    items = (response.get("Result") or {}).get("StreamInfoList") or []
    rows = [
        (
            f"{r['Vhost']}/{r['App']}/{r['Stream']}",
            r["SourceType"],
            r["StartTime"],
            r["EndTime"],
            r.get("Reason"),
        )
        for r in items
    ]
    out.print(table("ended streams", ["Stream", "Source", "Started", "Ended", "Why"], rows))


@stream.command("forbidden")
@click.option("--vhost", default=None)
@api_command
def stream_forbidden(api: ApiContext, vhost: str | None) -> None:
    """Forbidden streams and until when (DescribeForbiddenStreamInfoByPage)."""
    body: dict[str, Any] = {"PageNum": 1, "PageSize": 1000}
    if vhost:
        body["Vhost"] = vhost
    response = api.call("describe_forbidden_stream_info_by_page", body)
    if api.as_json:
        print_json(response)
        return
    items = (response.get("Result") or {}).get("StreamInfoList") or []
    rows = [(f"{r['Vhost']}/{r['App']}/{r['Stream']}", r["CreateTime"], r["EndTime"]) for r in items]
    out.print(table("forbidden streams", ["Stream", "Since", "Until"], rows))


@stream.command("state")
@stream_command
def stream_state(api: ApiContext, body: dict[str, Any], name: str) -> None:
    """online, offline or forbidden (DescribeLiveStreamState)."""
    response = api.call("describe_live_stream_state", body)
    result = response.get("Result") or {}
    api.report(response, f"{name}: {result.get('stream_state')} {result.get('type') or ''}".strip())


@stream.command("kill")
@stream_command
def stream_kill(api: ApiContext, body: dict[str, Any], name: str) -> None:
    """Cut the stream's current publisher off (KillStream)."""
    api.report(api.call("kill_stream", body), f"cut off {name}")


@stream.command("forbid")
@click.option("--until", default=None, metavar="T", help="Unix seconds or ISO 8601 (default: 90 days).")
@stream_command
def stream_forbid(api: ApiContext, body: dict[str, Any], name: str, until: str | None) -> None:
    """Refuse the stream's publisher until --until or `stream resume` (ForbidStream)."""
    end = parse_time(until, "--until")
    if end is not None:
        body["EndTime"] = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    api.report(api.call("forbid_stream", body), f"forbidden {name}")


@stream.command("resume")
@stream_command
def stream_resume(api: ApiContext, body: dict[str, Any], name: str) -> None:
    """Let the stream's publisher in again (ResumeStream)."""
    api.report(api.call("resume_stream", body), f"resumed {name}")


if __name__ == "__main__":  # pragma: no cover
    main()
