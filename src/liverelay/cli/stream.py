"""`liverelay stream`: live and ended streams, and cutting off, forbidding and resuming
publishers (Volcengine's stream actions)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from .app import cli
from .client import ApiContext, api_command
from .output import age, fail, out, print_json, table
from .relay import parse_time


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
