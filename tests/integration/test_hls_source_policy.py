"""The ffmpeg HLS source stays on the checked origin (sources/ffmpeg.py, check_hls_playlist).

Real loopback HTTP servers: a playlist that redirects to a denied address, one that names
segments on another host, a master whose variant does; each fails with a 'policy'
SourceError before ffmpeg starts, and through a RelayPull the error is the status row's
LastError. A same-origin playlist still plays (the existing HLS source tests cover media).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web
from tests.integration.relay_runner_helpers import KEY, fast_settings
from tests.integration.test_sources_flv import Sink, serve

from liverelay.config import RelaySettings
from liverelay.hub import Hub, SourceKind
from liverelay.relay.pull import RelayPull
from liverelay.sources.base import SourceError
from liverelay.sources.ffmpeg import build_ffmpeg_args, check_hls_playlist, check_playlist_hosts, pull

MEDIA = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:2.0,\n{seg}\n"


def settings(ffmpeg: str) -> RelaySettings:
    return RelaySettings(
        connect_timeout_s=2.0, first_frame_timeout_s=2.0, no_media_timeout_s=2.0, ffmpeg_path=ffmpeg
    )


def handler_for(routes: dict[str, web.Response]) -> object:
    async def handler(request: web.Request) -> web.StreamResponse:
        return routes.get(request.path, web.Response(status=404))

    return handler


async def expect_policy(url: str, ffmpeg: str) -> SourceError:
    with pytest.raises(SourceError) as info:
        await asyncio.wait_for(pull(url, Sink(), settings=settings(ffmpeg)), 15)
    assert info.value.reason == "policy", info.value
    return info.value


@pytest.mark.parametrize(
    "target",
    ["http://169.254.169.254/latest/meta-data.m3u8", "http://0.0.0.0:{port}/x.m3u8", "file:///etc/passwd"],
)
async def test_a_playlist_redirecting_off_the_origin_is_refused(ffmpeg: str, target: str) -> None:
    hits: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        port = request.url.port
        raise web.HTTPFound(target.format(port=port))

    async with serve(handler) as base:
        error = await expect_policy(f"{base}/live/s.m3u8", ffmpeg)
    assert "redirects to" in error.message
    assert hits == ["/live/s.m3u8"]  # checked once, by us; ffmpeg never ran


async def test_segments_on_another_host_are_refused(ffmpeg: str) -> None:
    routes = {"/live/s.m3u8": web.Response(text=MEDIA.format(seg="http://169.254.169.254/seg1.ts"))}
    async with serve(handler_for(routes)) as base:  # type: ignore[arg-type]
        error = await expect_policy(f"{base}/live/s.m3u8", ffmpeg)
    assert "169.254.169.254" in error.message


async def test_a_variant_naming_another_port_is_refused(ffmpeg: str) -> None:
    master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nlow/index.m3u8\n"
    routes: dict[str, web.Response] = {"/live/s.m3u8": web.Response(text=master)}
    async with serve(handler_for(routes)) as base:  # type: ignore[arg-type]
        port = int(base.rsplit(":", 1)[1])
        routes["/live/low/index.m3u8"] = web.Response(
            text=MEDIA.format(seg=f"http://127.0.0.1:{port + 1}/a.ts")
        )
        await expect_policy(f"{base}/live/s.m3u8", ffmpeg)


async def test_same_origin_redirect_is_followed_and_handed_to_ffmpeg() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/live/s.m3u8":
            raise web.HTTPFound("/other/s.m3u8")
        return web.Response(text=MEDIA.format(seg="seg1.ts"))

    async with serve(handler) as base:
        final = await check_hls_playlist(f"{base}/live/s.m3u8", RelaySettings(connect_timeout_s=2.0))
    assert final == f"{base}/other/s.m3u8"


def test_every_uri_form_is_checked() -> None:
    origin = ("http", "o.example", 80)
    base = "http://o.example/live/s.m3u8"
    ok = '#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="k.bin"\n#EXT-X-MAP:URI="/init.mp4"\n#EXTINF:2,\nseg.ts\n'
    assert check_playlist_hosts(base, ok, origin) == []
    for bad in (
        '#EXT-X-KEY:METHOD=AES-128,URI="http://evil.example/k"\n',
        '#EXT-X-MAP:URI="https://o.example/init.mp4"\n',  # another scheme (and port)
        '#EXT-X-PART:DURATION=0.3,URI="http://o.example:81/p.mp4"\n',
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="data:text/plain,x"\n',
        "#EXTINF:2,\nfile:///etc/passwd\n",
        "#EXTINF:2,\n//evil.example/seg.ts\n",
    ):
        with pytest.raises(SourceError) as info:
            check_playlist_hosts(base, "#EXTM3U\n" + bad, origin)
        assert info.value.reason == "policy", bad
    master = (
        '#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",URI="a.m3u8"\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n'
    )
    assert check_playlist_hosts(base, master, origin) == [
        "http://o.example/live/a.m3u8",
        "http://o.example/live/v.m3u8",
    ]


async def test_the_policy_error_is_the_relay_status_last_error(hub: Hub, ffmpeg: str, tmp_path: Path) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("http://169.254.169.254/latest.m3u8")

    async with serve(handler) as base:
        relay = RelayPull(
            key=KEY,
            kind="play",
            urls=[f"{base}/live/s.m3u8"],
            publication_factory=lambda: hub.publish(KEY, kind=SourceKind.RELAY_PLAY, owner="test"),
            settings=fast_settings(ffmpeg_path=ffmpeg, connect_timeout_s=2.0),
        )
        await asyncio.wait_for(relay.run(), 20)
    row = relay.status().wire()  # the status row is a model now; its wire form has the PascalCase keys
    assert row["LastError"].startswith("policy"), row
    assert "169.254.169.254" in row["LastError"]


def test_ffmpeg_may_open_only_http_for_hls() -> None:
    args = build_ffmpeg_args("ffmpeg", "http://o.example/live/s.m3u8", RelaySettings())
    i = args.index("-protocol_whitelist")
    assert args[i + 1] == "http,https,tls,tcp,crypto" and i < args.index("-i")
