"""URL authentication (docs/auth.md): UpdateAuthKey / DescribeAuth keep the keys per
(vhost, app, scene); GeneratePushURL / GeneratePlayURL sign URLs with the first key."""

from __future__ import annotations

import socket
import time
from datetime import datetime
from typing import Any

from ...netaddr import format_host, parse_hostport, split_hostport
from ...schemas.urlauth import (
    DEFAULT_VALID_DURATION,
    DESCRIBE_AUTH,
    GENERATE_PLAY_URL,
    GENERATE_PUSH_URL,
    UPDATE_AUTH_KEY,
    AuthView,
    DescribeAuthResult,
    GeneratePlayURLResult,
    GeneratePushURLResult,
    PlayURL,
    PushURLDetail,
)
from ...store import AuthKeyEntry, UrlAuthConfig, normalise_host
from ...timefmt import utc_iso
from ...urlauth import signed_query
from ...urlauth.sign import HMAC_SHA256
from ...urlauth.verifier import applicable
from ..binding import bind
from ..context import ActionContext, Result
from ..errors import invalid_param, request_forbidden
from .vhosts import require_vhost

RTMP_DEFAULT_PORT = 1935
HTTP_DEFAULT_PORT = 80
WILDCARDS = ("", "0.0.0.0", "::")


def _vhost_of(ctx: ActionContext, vhost: str | None, domain: str | None) -> str:
    if domain is not None:
        record = ctx.store.domain_table.get(domain)
        if record is None:
            raise request_forbidden(f"Domain {domain[:120]!r} does not exist")
        return record.vhost
    assert vhost is not None  # the schema asks for exactly one of the two
    require_vhost(ctx, vhost)
    return vhost


async def update_auth_key(ctx: ActionContext, body: dict[str, Any]) -> Result:
    req = bind(UPDATE_AUTH_KEY, body)
    vhost = _vhost_of(ctx, req.get("Vhost"), req.get("Domain"))
    keys = tuple(AuthKeyEntry(d["SecretKey"], d["EncryptionAlgorithm"]) for d in req["AuthDetailList"])
    config = UrlAuthConfig(
        vhost=vhost,
        app=req.get("App", ""),
        scene=req["SceneType"],
        enabled=req.get("PushPullEnable", False),
        valid_duration=req.get("ValidDuration", DEFAULT_VALID_DURATION),
        keys=keys,
        created=0,
        updated=0,
    )
    await ctx.store.put_url_auth(config)
    return None


def _view(config: UrlAuthConfig, domain: str) -> AuthView:
    return {
        "Vhost": config.vhost,
        "Domain": domain,
        "App": config.app,
        "SceneType": config.scene,
        "AuthStatus": config.enabled,
        "AuthDetailList": [
            {"SecretKey": k.secret_key, "EncryptionAlgorithm": k.algorithm} for k in config.keys
        ],
        "ValidDuration": config.valid_duration,
    }


async def describe_auth(ctx: ActionContext, body: dict[str, Any]) -> DescribeAuthResult:
    req = bind(DESCRIBE_AUTH, body)
    domain = req.get("Domain")
    vhost = _vhost_of(ctx, req.get("Vhost"), domain)
    app, scene = req.get("App"), req.get("SceneType")
    configs = [
        c
        for c in await ctx.store.list_url_auth(vhost)
        if (app is None or c.app == app) and (scene is None or c.scene == scene)
    ]
    return {"AuthList": [_view(c, normalise_host(domain) if domain else "") for c in configs]}


# ---- signed URLs ----


def _expiry(req: Any, config: UrlAuthConfig | None) -> int:
    """ExpiredTime wins over ValidDuration; else the config's ValidDuration; else 7 days."""
    if "ExpiredTime" in req:
        expires = int(datetime.fromisoformat(req["ExpiredTime"]).timestamp())
        if expires <= time.time():
            raise invalid_param("ExpiredTime is in the past")
        return expires
    duration = req.get("ValidDuration") or (config.valid_duration if config else DEFAULT_VALID_DURATION)
    return int(time.time()) + int(duration)


async def _config(ctx: ActionContext, vhost: str, app: str, scene: str) -> UrlAuthConfig | None:
    """The config the verifier applies to this (vhost, app), as the store has it now."""
    configs = {c.key: c for c in await ctx.store.list_url_auth(vhost)}
    return applicable(configs, vhost, app, scene)


def _auth_type(config: UrlAuthConfig | None) -> str:
    if config is None:
        return ""
    return "TypeCustom" if config.keys[0].algorithm == HMAC_SHA256 else "TypeB"


def _query(config: UrlAuthConfig | None, app: str, stream: str, expires: int) -> str:
    if config is None:
        return ""
    key = config.keys[0]
    return "?" + signed_query(key.algorithm, app, stream, key.secret_key, expires)


def _fallback_host(ctx: ActionContext, listen: str) -> tuple[str, int]:
    """(host, port) for a vhost without domains: media.url_host, else the listener's address."""
    host, port = parse_hostport(listen)
    if ctx.settings.media.url_host:
        given, given_port = split_hostport(ctx.settings.media.url_host)
        return given, int(given_port) if given_port else port
    if host in WILDCARDS:
        host = socket.gethostname()
    return host, port


def _authority(host: str, port: int, default_port: int) -> str:
    return format_host(host) if port == default_port else f"{format_host(host)}:{port}"


def _hosts(
    ctx: ActionContext, vhost: str, domain: str | None, kinds: tuple[str, ...], listen: str
) -> list[tuple[str, int]]:
    _, port = parse_hostport(listen)
    if domain is not None:
        return [(normalise_host(domain), port)]
    names = [r.domain for r in ctx.store.domain_table.domains_of(vhost) if r.type in kinds]
    return [(n, port) for n in names] or [_fallback_host(ctx, listen)]


async def generate_push_url(ctx: ActionContext, body: dict[str, Any]) -> GeneratePushURLResult:
    req = bind(GENERATE_PUSH_URL, body)
    vhost, app, stream = req["Vhost"], req["App"], req["Stream"]
    require_vhost(ctx, vhost)
    domain = req.get("Domain")
    if domain is not None:
        record = ctx.store.domain_table.get(domain)
        if record is None or record.vhost != vhost or record.type != "push":
            raise request_forbidden(f"Domain {domain[:120]!r} is no push domain of Vhost {vhost!r}")
    config = await _config(ctx, vhost, app, "push")
    expires = _expiry(req, config)
    query = _query(config, app, stream, expires)
    urls: list[str] = []
    details: list[PushURLDetail] = []
    for host, port in _hosts(ctx, vhost, domain, ("push",), ctx.settings.media.rtmp_listen):
        base = f"rtmp://{_authority(host, port, RTMP_DEFAULT_PORT)}/{app}"
        urls.append(f"{base}/{stream}{query}")
        details.append(
            {"URL": f"{base}/{stream}{query}", "DomainApp": base, "StreamSign": f"{stream}{query}"}
        )
    return {
        "PushURLList": urls,
        "PushURLListDetail": details,
        "AuthType": _auth_type(config),
        "ExpiredTime": utc_iso(expires),
    }


async def generate_play_url(ctx: ActionContext, body: dict[str, Any]) -> GeneratePlayURLResult:
    req = bind(GENERATE_PLAY_URL, body)
    app, stream = req["App"], req["Stream"]
    if req.get("Suffix"):
        raise invalid_param("Suffix: this node has no transcoding (give no Suffix)")
    domain = req.get("Domain")
    if domain is not None:
        # A domain not in the table lands in the default vhost, as a viewer using it would.
        record = ctx.store.domain_table.get(domain)
        vhost = record.vhost if record is not None else ctx.settings.media.default_vhost
        if not vhost:
            raise request_forbidden(f"Domain {domain[:120]!r} does not exist")
    elif "Vhost" in req:
        vhost = req["Vhost"]
        require_vhost(ctx, vhost)
    else:
        raise invalid_param("give Domain (or Vhost)")
    config = await _config(ctx, vhost, app, "pull")
    expires = _expiry(req, config)
    query = _query(config, app, stream, expires)
    media = ctx.settings.media
    urls: list[PlayURL] = []
    for host, port in _hosts(ctx, vhost, domain, ("pull-flv",), media.rtmp_listen):
        urls.append(
            {
                "URL": f"rtmp://{_authority(host, port, RTMP_DEFAULT_PORT)}/{app}/{stream}{query}",
                "CDN": "fcdn",
                "Protocol": "rtmp",
                "Type": "pull",
            }
        )
    for host, port in _hosts(ctx, vhost, domain, ("pull-flv",), media.http_listen):
        authority = _authority(host, port, HTTP_DEFAULT_PORT)
        for protocol, suffix in (("flv", ".flv"), ("hls", ".m3u8")):
            urls.append(
                {
                    "URL": f"http://{authority}/{app}/{stream}{suffix}{query}",
                    "CDN": "fcdn",
                    "Protocol": protocol,
                    "Type": "pull",
                }
            )
    return {"URLList": urls, "AuthType": _auth_type(config), "ExpiredTime": utc_iso(expires)}
