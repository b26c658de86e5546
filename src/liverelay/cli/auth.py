"""`liverelay auth` (URL-signing keys: UpdateAuthKey, DescribeAuth) and `liverelay url`
(signed push/play URLs: GeneratePushURL, GeneratePlayURL), through the API."""

from __future__ import annotations

from typing import Any

import click

from ..schemas.urlauth import MAX_VALID_DURATION, MIN_VALID_DURATION
from ..urlauth import ALGORITHMS
from .app import cli
from .client import ApiContext, api_command
from .output import fail, out, print_json, table


def _target(vhost: str | None, domain: str | None) -> dict[str, str]:
    if (vhost is None) == (domain is None):
        fail("give exactly one of --vhost and --domain", 2)
    return {"Vhost": vhost} if vhost is not None else {"Domain": domain or ""}


@cli.group()
def auth() -> None:
    """URL authentication keys of publishers (push) and players (pull)."""


@auth.command("set")
@click.option("--vhost", help="Vhost the keys apply to.")
@click.option("--domain", help="...or a domain of that vhost.")
@click.option("--app", default=None, help="Only this app (default: every app of the vhost).")
@click.option("--scene", type=click.Choice(["push", "pull"]), required=True, help="Publishing or playing.")
@click.option("--key", "key", required=True, help="The signing key (letters and digits, 1-100).")
@click.option("--backup-key", help="A second key still accepted (during a rotation).")
@click.option("--algorithm", type=click.Choice(ALGORITHMS), default="md5", show_default=True)
@click.option(
    "--valid-duration",
    type=click.IntRange(MIN_VALID_DURATION, MAX_VALID_DURATION),
    help="Default lifetime of generated URLs, seconds (default 604800).",
)
@click.option("--disable", is_flag=True, help="Store the keys but do not check signatures.")
@api_command
def auth_set(
    api: ApiContext,
    vhost: str | None,
    domain: str | None,
    app: str | None,
    scene: str,
    key: str,
    backup_key: str | None,
    algorithm: str,
    valid_duration: int | None,
    disable: bool,
) -> None:
    """Set the keys of a vhost (or one app) for push or pull (UpdateAuthKey: a full replace)."""
    keys = [key] + ([backup_key] if backup_key else [])
    body: dict[str, Any] = {
        **_target(vhost, domain),
        "SceneType": scene,
        "AuthDetailList": [{"SecretKey": k, "EncryptionAlgorithm": algorithm} for k in keys],
        "PushPullEnable": not disable,
    }
    if app:
        body["App"] = app
    if valid_duration is not None:
        body["ValidDuration"] = valid_duration
    response = api.call("update_auth_key", body)
    where = f"{vhost or domain}/{app or '*'}"
    state = "disabled" if disable else "enabled"
    api.report(response, f"{scene} keys of {where} set ({len(keys)} key(s), {algorithm}, {state})")


@auth.command("show")
@click.option("--vhost", help="Vhost to show.")
@click.option("--domain", help="...or a domain of that vhost.")
@click.option("--app", default=None, help="Only this app's config.")
@click.option("--scene", type=click.Choice(["push", "pull"]), default=None, help="Only push or pull.")
@click.option("--reveal", is_flag=True, help="Print the keys in full (default: first 4 characters).")
@api_command
def auth_show(
    api: ApiContext, vhost: str | None, domain: str | None, app: str | None, scene: str | None, reveal: bool
) -> None:
    """Show URL authentication configs (DescribeAuth)."""
    body: dict[str, Any] = _target(vhost, domain)
    if app:
        body["App"] = app
    if scene:
        body["SceneType"] = scene
    response = api.call("describe_auth", body)
    if api.as_json:
        print_json(response)
        return
    rows = []
    for item in (response.get("Result") or {}).get("AuthList") or []:
        keys = [
            (d.get("SecretKey", "") if reveal else d.get("SecretKey", "")[:4] + "...")
            + f" ({d.get('EncryptionAlgorithm')})"
            for d in item.get("AuthDetailList") or []
        ]
        state = "on" if item.get("AuthStatus") else "off"
        app_name = item.get("App") or "*"
        rows.append(
            (
                item.get("Vhost"),
                app_name,
                item.get("SceneType"),
                state,
                item.get("ValidDuration"),
                ", ".join(keys),
            )
        )
    out.print(table("URL authentication", ["Vhost", "App", "Scene", "Status", "ValidDuration", "Keys"], rows))


@cli.group()
def url() -> None:
    """Signed push and play URLs (GeneratePushURL, GeneratePlayURL)."""


def _expiry(body: dict[str, Any], valid_duration: int | None, expires: str | None) -> None:
    if valid_duration is not None:
        body["ValidDuration"] = valid_duration
    if expires is not None:
        body["ExpiredTime"] = expires


_VALID = click.option("--valid-duration", type=click.IntRange(1, None), help="Lifetime in seconds.")
_EXPIRES = click.option("--expires", help="Expiry as RFC 3339 (wins over --valid-duration).")


@url.command("push")
@click.option("--vhost", required=True)
@click.option("--domain", help="Only this push domain (default: every push domain of the vhost).")
@click.option("--app", required=True)
@click.option("--stream", required=True)
@_VALID
@_EXPIRES
@api_command
def url_push(
    api: ApiContext,
    vhost: str,
    domain: str | None,
    app: str,
    stream: str,
    valid_duration: int | None,
    expires: str | None,
) -> None:
    """Print the signed RTMP push URL(s) of a stream."""
    body: dict[str, Any] = {"Vhost": vhost, "App": app, "Stream": stream}
    if domain:
        body["Domain"] = domain
    _expiry(body, valid_duration, expires)
    response = api.call("generate_push_url", body)
    result = response.get("Result") or {}
    api.report(
        response, "\n".join(result.get("PushURLList") or []) + f"\n(expires {result.get('ExpiredTime')})"
    )


@url.command("play")
@click.option("--domain", help="Pull domain (or the address viewers use).")
@click.option("--vhost", help="...or every pull domain of this vhost.")
@click.option("--app", required=True)
@click.option("--stream", required=True)
@_VALID
@_EXPIRES
@api_command
def url_play(
    api: ApiContext,
    domain: str | None,
    vhost: str | None,
    app: str,
    stream: str,
    valid_duration: int | None,
    expires: str | None,
) -> None:
    """Print the signed play URLs of a stream (RTMP, HTTP-FLV, HLS)."""
    body: dict[str, Any] = {**_target(vhost, domain), "App": app, "Stream": stream}
    _expiry(body, valid_duration, expires)
    response = api.call("generate_play_url", body)
    result = response.get("Result") or {}
    lines = [f"{u.get('Protocol'):<5} {u.get('URL')}" for u in result.get("URLList") or []]
    api.report(response, "\n".join(lines) + f"\n(expires {result.get('ExpiredTime')})")
